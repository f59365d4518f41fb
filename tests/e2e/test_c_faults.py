"""c. Nothing lost (invariant 1): with the backend down, disconnecting,
tempfailing or slower than posternd's timeouts, the client gets 4xx, and a
count shows that every message the client got 250 for is at the backend, and
no other. Batches are bounded (a few messages per fault, 20 mixed)."""

import pytest

import pxtest as px

# posternd gives up on a silent backend after 2 s; stalling peers wait far
# longer (until posternd goes away), so no outcome depends on a race.
FAST_TIMEOUTS = ["timeouts.backend_connect=2s", "timeouts.backend_command=2s",
                 "timeouts.backend_data=2s"]

PER_FAULT = 3


def one(port, i, rcpt="user@example.test", tag="c"):
    """Send one message in its own session; returns (msgid, final reply).

    A reply of None means the connection closed without a reply, which a
    client treats like 4xx (it keeps the message)."""
    msgid = "<%s-%d@pxtest.test>" % (tag, i)
    msg = px.make_message(subject="fault %d" % i, msgid=msgid)
    try:
        res = px.send_message(port, msg, mail_from="%s-%d@client.test" % (tag, i),
                              rcpts=[rcpt])
        return msgid, msg, res["final"]
    except (ConnectionError, OSError) as e:
        return msgid, msg, e


def code(final):
    return final.code if isinstance(final, px.SmtpReply) else None


def assert_tempfail(final, what):
    assert isinstance(final, px.SmtpReply), "%s: connection lost without a reply (%s)" % (
        what, final)
    assert 400 <= final.code < 500, "%s: client got %s, expected 4xx" % (what, final)
    assert final.lines[0].startswith("4."), "%s: no 4.x.x enhanced code: %s" % (what, final)


def test_baseline_all_delivered(sink, make_posternd):
    """Without faults, the counts agree: N sent, N x 250, N at the backend."""
    d = make_posternd("smtp:" + sink.address, overrides=FAST_TIMEOUTS)
    n = 10
    finals = [one(d.port, i, tag="base")[2] for i in range(n)]
    assert [code(f) for f in finals] == [250] * n, finals
    assert sink.count() == n
    assert sorted(m.mail_from for m in sink.messages()) == sorted(
        "base-%d@client.test" % i for i in range(n))


def test_backend_down(make_posternd):
    """Nothing listens on the backend port: every message gets 4xx."""
    dead = px.free_port()
    d = make_posternd("smtp:127.0.0.1:%d" % dead, overrides=FAST_TIMEOUTS)
    for i in range(PER_FAULT):
        _, _, final = one(d.port, i, tag="down")
        assert_tempfail(final, "backend down, message %d" % i)
        assert final.lines[0].startswith("4.4."), "expected 4.4.x: %s" % final
    assert d.alive()


# smtp-sink switches, what they do, and whether smtp-sink still ends up with
# a complete copy (it dumps the data before it answers the end of data, even
# when it then refuses or drops it; it never acknowledged such a copy).
SINK_FAULTS = [
    (["-q", "CONNECT"], "disconnects at connect", False),
    (["-W", "CONNECT:20"], "20 s silent greeting", False),
    (["-r", "CONNECT"], "tempfails the greeting", False),
    (["-r", "MAIL"], "tempfails MAIL", False),
    (["-q", "MAIL"], "disconnects at MAIL", False),
    (["-q", "RCPT"], "disconnects at RCPT", False),
    (["-Q", "RCPT"], "421 at RCPT", False),
    (["-q", "DATA"], "disconnects at DATA", False),
    (["-Q", "DATA"], "421 at DATA", False),
    (["-r", "DATA"], "tempfails DATA", False),
    (["-q", "."], "disconnects at end of data", True),
    (["-Q", "."], "421 at end of data", True),
    (["-r", "."], "tempfails end of data", True),
    (["-W", "RCPT:20"], "20 s silent at RCPT", False),
    (["-w", "20"], "20 s silent at DATA", False),
    (["-W", ".:20"], "20 s silent at end of data", True),
]


@pytest.mark.parametrize("opts,what,copies", SINK_FAULTS,
                         ids=[w for _, w, _ in SINK_FAULTS])
def test_smtp_sink_fault(make_sink, make_posternd, opts, what, copies):
    sink = make_sink(opts)
    d = make_posternd("smtp:" + sink.address, overrides=FAST_TIMEOUTS)
    for i in range(PER_FAULT):
        _, _, final = one(d.port, i, tag="sink")
        assert_tempfail(final, "backend %s, message %d" % (what, i))
    # smtp-sink acknowledged no message, and the client has no 250 for any;
    # where smtp-sink stopped before the data, it holds no copy either.
    if not copies:
        assert sink.count() == 0, sink.messages()
    else:
        assert sink.count() <= PER_FAULT
    # posternd keeps serving
    assert d.alive()
    ok = px.SmtpClient(d.port)
    assert ok.greeting().code == 220
    ok.quit()


def test_smtp_sink_aborts_data_with_5xx(make_sink, make_posternd):
    """smtp-sink -A 0: answers DATA, then aborts with 550 and stops reading.
    The client must not get 250 (4xx, or the backend's 5xx)."""
    sink = make_sink(["-A", "0"])
    d = make_posternd("smtp:" + sink.address, overrides=FAST_TIMEOUTS)
    for i in range(PER_FAULT):
        _, _, final = one(d.port, i, tag="abort")
        assert isinstance(final, px.SmtpReply), final
        assert final.code >= 400, final


MIX = ["ok", "eod-tempfail", "drop-mid", "ok", "drop-eod", "stall-eod", "data-tempfail",
       "ok", "drop-data", "stall-data", "rcpt-tempfail", "ok", "stall-rcpt", "eod-reject",
       "ok", "drop-mid", "eod-tempfail", "ok", "drop-eod", "ok"]


def test_mixed_fault_batch(make_fault_backend, make_posternd):
    """20 messages, one session each, the backend failing some of them in
    different ways (chosen by the recipient's local part): the set of
    messages the client got 2xx for equals the set the backend accepted, and
    every failure is 4xx (5xx only where the backend said 5xx)."""
    be = make_fault_backend()
    d = make_posternd("smtp:" + be.address, overrides=FAST_TIMEOUTS)
    assert len(MIX) == 20
    client_ok, sent = set(), {}
    problems = []
    for i, fault in enumerate(MIX):
        msgid, msg, final = one(d.port, i, rcpt="%s@example.test" % fault, tag="mix")
        sent[msgid] = msg
        c = code(final)
        if c is not None and 200 <= c < 300:
            client_ok.add(msgid)
        if fault == "ok":
            if c != 250:
                problems.append("%d %s: expected 250, got %s" % (i, fault, final))
        elif fault == "eod-reject":
            if c is None or not 500 <= c < 600:
                problems.append("%d %s: expected the backend's 5xx, got %s" % (i, fault, final))
        elif c is None or not 400 <= c < 500:
            problems.append("%d %s: expected 4xx, got %s" % (i, fault, final))
    at_backend = {}
    for a in be.accepted:
        rec, rest = px.pop_header_field(a["data"])
        ids = [l.split(b":", 1)[1].strip().decode() for l in rest.split(b"\r\n")
               if l.lower().startswith(b"message-id:")]
        assert len(ids) == 1, a
        at_backend.setdefault(ids[0], []).append(rest)
    assert client_ok == set(at_backend), (
        "2xx to client but not at backend: %s; at backend without 2xx: %s"
        % (sorted(client_ok - set(at_backend)), sorted(set(at_backend) - client_ok)))
    for msgid, copies in at_backend.items():
        assert len(copies) == 1, "%s accepted %d times" % (msgid, len(copies))
        assert copies[0] == sent[msgid], "%s altered" % msgid
    assert len(client_ok) == MIX.count("ok")
    assert not problems, "\n".join(problems)
    assert d.alive()


PROTO_MIX = ["ok", "data-250", "ok", "eod-garbage", "ok", "eod-partial", "rcpt-garbage", "ok"]


def test_backend_protocol_violations(make_fault_backend, make_posternd):
    """Unexpected backend replies (250 to DATA, a line that is no reply, a
    reply cut short) become 4xx; only real 250s count."""
    be = make_fault_backend()
    d = make_posternd("smtp:" + be.address, overrides=FAST_TIMEOUTS)
    client_ok, problems = set(), []
    for i, fault in enumerate(PROTO_MIX):
        msgid, msg, final = one(d.port, i, rcpt="%s@example.test" % fault, tag="proto")
        c = code(final)
        if c is not None and 200 <= c < 300:
            client_ok.add(msgid)
        if fault == "ok" and c != 250:
            problems.append("%d %s: expected 250, got %s" % (i, fault, final))
        if fault != "ok" and (c is None or not 400 <= c < 500):
            problems.append("%d %s: expected 4xx, got %s" % (i, fault, final))
    at_backend = set()
    for a in be.accepted:
        _, rest = px.pop_header_field(a["data"])
        at_backend |= {l.split(b":", 1)[1].strip().decode() for l in rest.split(b"\r\n")
                       if l.lower().startswith(b"message-id:")}
    assert not problems and client_ok == at_backend, (
        "\n".join(problems) + "\n2xx to client but not at backend: %s; at backend without "
        "2xx: %s" % (sorted(client_ok - at_backend), sorted(at_backend - client_ok)))
    assert d.alive()


def test_mixed_faults_one_session(make_fault_backend, make_posternd):
    """The same 20 faults as transactions of as few client sessions as
    posternd allows (a new session only after it closed one): a backend
    failure in one transaction must not leak into the next."""
    be = make_fault_backend()
    d = make_posternd("smtp:" + be.address, overrides=FAST_TIMEOUTS)
    client_ok, sent, replies = set(), {}, []
    c = None
    sessions = 0
    for i, fault in enumerate(MIX):
        if c is None:
            c = px.SmtpClient(d.port)
            sessions += 1
            assert c.greeting().code == 220
            assert c.ehlo().code == 250
        msgid = "<one-%d@pxtest.test>" % i
        msg = px.make_message(subject="one session %d" % i, msgid=msgid)
        sent[msgid] = msg
        final = None
        try:
            r = c.cmd("MAIL FROM:<one-%d@client.test>" % i)
            final = r
            if r.code == 250:
                r = c.cmd("RCPT TO:<%s@example.test>" % fault)
                final = r
                if r.code == 250:
                    _, final = c.data(msg)
                else:
                    c.cmd("RSET")
            else:
                c.cmd("RSET")
        except (ConnectionError, OSError):
            c.close()
            c = None
        replies.append((fault, final))
        if final is not None and 200 <= final.code < 300:
            client_ok.add(msgid)
        if final is not None and final.code == 421 and c is not None:
            assert c.at_eof(), "421 but the connection stays open"
            c.close()
            c = None
    if c is not None:
        c.quit()
    at_backend = set()
    for a in be.accepted:
        _, rest = px.pop_header_field(a["data"])
        ids = [l.split(b":", 1)[1].strip().decode() for l in rest.split(b"\r\n")
               if l.lower().startswith(b"message-id:")]
        assert ids[0] not in at_backend, "%s accepted twice" % ids[0]
        at_backend.add(ids[0])
        assert rest == sent[ids[0]]
    assert client_ok == at_backend, (sorted(client_ok ^ at_backend), replies)
    oks = [f for (fault, f) in replies if fault == "ok"]
    assert all(f is not None and f.code == 250 for f in oks), replies
    for fault, f in replies:
        if fault not in ("ok", "eod-reject"):
            assert f is None or 400 <= f.code < 500, (fault, f)


def test_client_disconnects_mid_data(make_fault_backend, make_posternd):
    """A client that goes away in the middle of the message: nothing reaches
    the backend, and the spool is cleaned up."""
    be = make_fault_backend()
    d = make_posternd("smtp:" + be.address, overrides=["limits.spool_memory_max=4k"])
    for size in (100, 200000):
        c = px.SmtpClient(d.port)
        c.greeting()
        c.ehlo()
        assert c.cmd("MAIL FROM:<gone@client.test>").code == 250
        assert c.cmd("RCPT TO:<ok@example.test>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(px.make_message(body=b"z" * 70 + b"\r\n")[:60])
        c.send((b"q" * 70 + b"\r\n") * (size // 72))
        c.close()
    # posternd notices the closed sessions (bounded wait for its log)
    d.wait_log(r"disconnect", n=3)     # readiness probe + two sessions
    assert be.accepted == []
    px.wait_until(lambda: spool_files(d) == [], 10, "empty spool")


def spool_files(d):
    import os
    out = []
    for root, _dirs, names in os.walk(d.spool):
        out += [os.path.join(root, n) for n in names]
    return out


def test_large_message_spooled_to_disk(sink, make_posternd):
    """A 3 MB message over a 64 KB memory spool: byte-identical at the
    backend, and the spool is empty afterwards."""
    d = make_posternd("smtp:" + sink.address, overrides=["limits.spool_memory_max=64k"])
    line = bytes(range(33, 127)) + b"\r\n"
    body = b"".join(b"%06d " % i + line for i in range(30000))
    msg = px.make_message(subject="large", body=body + b".\r\n..\r\n")
    res = px.send_message(d.port, msg, mail_from="large@client.test")
    assert res["final"].code == 250, res["final"]
    got = sink.wait_for(1, mail_from="large@client.test")
    assert len(got) == 1
    rec, rest = px.pop_header_field(got[0].content)
    px.parse_postern_received(rec)
    assert rest == px.normalise(msg)
    px.wait_until(lambda: spool_files(d) == [], 10, "empty spool")


def test_large_message_backend_drops_mid_data(make_fault_backend, make_posternd):
    be = make_fault_backend()
    d = make_posternd("smtp:" + be.address,
                      overrides=FAST_TIMEOUTS + ["limits.spool_memory_max=64k"])
    body = (b"w" * 998 + b"\r\n") * 3000
    res = px.send_message(d.port, px.make_message(body=body),
                          rcpts=["drop-mid@example.test"])
    assert 400 <= res["final"].code < 500, res["final"]
    assert be.accepted == []
    res = px.send_message(d.port, px.make_message(body=body), rcpts=["ok@example.test"])
    assert res["final"].code == 250, res["final"]
    assert len(be.accepted) == 1
    px.wait_until(lambda: spool_files(d) == [], 10, "empty spool")


def test_unsolicited_backend_reply_does_not_shift_replies(make_fault_backend, make_posternd):
    """The backend sends an extra, unsolicited 250 after a message: the next
    transactions of the same client session must not be answered with stale
    replies (every 250 the client gets is for a message the backend has)."""
    be = make_fault_backend()
    d = make_posternd("smtp:" + be.address, overrides=FAST_TIMEOUTS)
    finals = {}
    with px.SmtpClient(d.port) as c:
        c.greeting()
        c.ehlo()
        for i, lp in enumerate(["eod-double", "ok", "ok", "ok"]):
            msgid = "<dbl-%d@pxtest.test>" % i
            try:
                r = c.cmd("MAIL FROM:<dbl-%d@client.test>" % i)
                if r.code == 250:
                    r = c.cmd("RCPT TO:<%s@example.test>" % lp)
                    if r.code == 250:
                        _, r = c.data(px.make_message(msgid=msgid))
                    else:
                        c.cmd("RSET")
                else:
                    c.cmd("RSET")
            except (ConnectionError, OSError):
                finals[msgid] = None
                break
            finals[msgid] = r
        c.close()
    client_ok = {m for m, r in finals.items() if r is not None and 200 <= r.code < 300}
    at_backend = set()
    for a in be.accepted:
        _, rest = px.pop_header_field(a["data"])
        at_backend |= {l.split(b":", 1)[1].strip().decode() for l in rest.split(b"\r\n")
                       if l.lower().startswith(b"message-id:")}
    assert client_ok <= at_backend, (
        "2xx to client but not at backend: %s (replies %s)"
        % (sorted(client_ok - at_backend), finals))
