"""i. The log (stderr with -f): every line "posternd[PID]: ...", one session
id (16 hex) on every line of a session, distinct between sessions, and one
summary line per message:
  SID message client=IP helo=H from=<F> nrcpt=N rcpt=<a>,<b> size=BYTES
      status=delivered|rejected|deferred reply="250 ..." ms=N
"""

import re

import pxtest as px


def session(port, helo, sender, rcpts, message):
    with px.SmtpClient(port) as c:
        c.greeting()
        c.ehlo(helo)
        c.cmd("MAIL FROM:<%s>" % sender)
        rr = [c.cmd("RCPT TO:<%s>" % r) for r in rcpts]
        final = None
        if any(r.code == 250 for r in rr):
            _, final = c.data(message)
        c.quit()
    return final


def wait_summaries(d, n):
    d.wait_log(r"^posternd\[\d+\]: [0-9a-f]{16} message ", n)
    return d.summaries()


def test_summary_line_per_message(make_fault_backend, make_posternd):
    be = make_fault_backend()
    d = make_posternd("smtp:" + be.address)
    msg = px.make_message(subject="log")
    cases = [  # helo, sender, rcpts, expected status
        ("h1.client.test", "s1@client.test", ["ok@example.test"], "delivered"),
        ("h2.client.test", "s2@client.test", ["ok@example.test", "ok2@example.test"],
         "delivered"),
        ("h3.client.test", "s3@client.test", ["eod-tempfail@example.test"], "deferred"),
        ("h4.client.test", "s4@client.test", ["eod-reject@example.test"], "rejected"),
    ]
    finals = [session(d.port, h, s, r, msg) for h, s, r, _ in cases]
    assert [f.code for f in finals] == [250, 250, 451, 554], finals
    sums = wait_summaries(d, len(cases))
    assert len(sums) == len(cases), "expected %d summary lines, got:\n%s" % (
        len(cases), "\n".join(x["line"] for x in sums))
    by_from = {}
    for s in sums:
        by_from.setdefault(s.get("from"), []).append(s)
    for (helo, sender, rcpts, status), final in zip(cases, finals):
        got = by_from.get("<%s>" % sender, [])
        assert len(got) == 1, "summary lines for %s: %s" % (sender, got)
        s = got[0]
        assert s["client"] == "127.0.0.1", s["line"]
        assert s["helo"] == helo, s["line"]
        assert s["nrcpt"] == str(len(rcpts)), s["line"]
        assert s["rcpt"] == ",".join("<%s>" % r for r in rcpts), s["line"]
        assert re.fullmatch(r"\d+", s["size"]), s["line"]
        assert len(msg) <= int(s["size"]) <= len(msg) + 1024, s["line"]
        assert s["status"] == status, s["line"]
        assert s["reply"].startswith(str(final.code) + " "), (s["line"], final)
        assert re.fullmatch(r"\d+", s["ms"]), s["line"]


def test_summary_for_backend_down(make_posternd):
    """Backend down: RCPT gets 4xx, and no summary line claims delivery."""
    d = make_posternd("smtp:127.0.0.1:%d" % px.free_port(),
                      overrides=["timeouts.backend_connect=2s"])
    session(d.port, "down.client.test", "down@client.test", ["user@example.test"],
            px.make_message())
    assert not [s for s in d.summaries() if s.get("status") == "delivered"]


def test_every_line_has_pid_and_session_ids_are_consistent(make_fault_backend,
                                                           make_posternd):
    be = make_fault_backend()
    d = make_posternd("smtp:" + be.address)
    msg = px.make_message()
    # three interleaved sessions, each with a unique HELO and sender
    clients = []
    for i in range(3):
        c = px.SmtpClient(d.port)
        c.greeting()
        clients.append(c)
    for i, c in enumerate(clients):
        assert c.ehlo("sess%d.client.test" % i).code == 250
    for i, c in enumerate(clients):
        assert c.cmd("MAIL FROM:<sess%d@client.test>" % i).code == 250
    for i, c in enumerate(clients):
        assert c.cmd("RCPT TO:<ok@example.test>").code == 250
    for i, c in enumerate(clients):
        assert c.data(msg)[1].code == 250
    for c in clients:
        c.quit()
    sums = wait_summaries(d, 3)
    assert len(sums) == 3
    pid = d.proc.pid
    lines = d.lines()
    bad = [l for l in lines if not l.startswith("posternd[%d]: " % pid)]
    # Postern's Received id is the session id of the session that took it
    rec_ids = {}
    for a in be.accepted:
        rec, _ = px.pop_header_field(a["data"])
        rec_ids[a["mail_from"]] = px.parse_postern_received(rec)["id"]
    sids = {}
    for i in range(3):
        marker = re.compile(r"sess%d(\.client\.test|@client\.test)" % i)
        mine = [l for l in lines if marker.search(l)]
        assert mine, "no log line mentions session %d" % i
        ids = set()
        for l in mine:
            m = px.LOG_RE.match(l)
            assert m, "log line without a session id: %r" % l
            ids.add(m.group(2))
        assert len(ids) == 1, "session %d logged under several ids: %s" % (i, ids)
        sids[i] = ids.pop()
        assert rec_ids["sess%d@client.test" % i] == sids[i], (rec_ids, sids)
        # and every line with that id belongs to this session only
        other = [l for l in lines if sids[i] in l and re.search(r"sess(?!%d)\d" % i, l)]
        assert not other, other
    assert len(set(sids.values())) == 3, sids
    assert not bad, "lines not starting with posternd[%d]: %s" % (pid, bad[:5])


def test_session_ids_unique(sink, make_posternd):
    """Ten sessions, one message each: ten distinct session ids, each the id
    in the Received header of that session's message."""
    d = make_posternd("smtp:" + sink.address)
    for i in range(10):
        f = session(d.port, "u%d.client.test" % i, "u%d@client.test" % i,
                    ["user@example.test"], px.make_message())
        assert f.code == 250, f
    sums = wait_summaries(d, 10)
    assert len(sums) == 10
    sid_of = {s["from"]: s["sid"] for s in sums}
    assert len(set(sid_of.values())) == 10, sid_of
    for i in range(10):
        m = sink.wait_for(1, mail_from="u%d@client.test" % i)[0]
        rec, _ = px.pop_header_field(m.content)
        assert px.parse_postern_received(rec)["id"] == sid_of["<u%d@client.test>" % i]


def test_log_lines_stay_lines(make_fault_backend, make_posternd):
    """Client- and backend-supplied text cannot break the log format: no
    control characters, and every line starts with posternd[PID]:. The
    backend's EHLO reply is multi-line, and the client sends CR, ESC, NUL
    and quotes."""
    be = make_fault_backend()
    d = make_posternd("smtp:" + be.address)
    with px.SmtpClient(d.port) as c:
        c.greeting()
        c.ehlo("evil\x1b[31m.client.test")
        c.ehlo("client.test")
        c.send(b"NOOP a\rposternd[1]: 0000000000000000 message status=delivered\r\n")
        c.reply()
        c.send(b"NOOP b\x00c\r\n")
        try:
            c.reply()
        except (ConnectionError, px.SmtpError):
            pass
        try:
            c.cmd('MAIL FROM:<"q\\"uote"@client.test>')
            c.cmd("RCPT TO:<ok@example.test>")
            c.data(px.make_message())
            c.quit()
        except (ConnectionError, OSError):
            pass
    c2 = px.SmtpClient(d.port)
    c2.greeting()
    c2.ehlo()
    c2.quit()
    d.wait_log(r"disconnect", n=3)     # readiness probe + two sessions
    raw = open(d.logfile, "rb").read()
    ctl = sorted(set(re.findall(rb"[\x00-\x08\x0b-\x1f\x7f]", raw)))
    assert not ctl, "control characters in the log: %r" % ctl
    pid = d.proc.pid
    bad = [l for l in raw.split(b"\n") if l and not l.startswith(b"posternd[%d]: " % pid)]
    assert not bad, "log lines not starting with posternd[%d]: %r" % (pid, bad[:5])
    assert not [s for s in d.summaries() if s["sid"] == "0000000000000000"]
