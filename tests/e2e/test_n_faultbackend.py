"""n. Nothing lost, recipient by recipient (issue 7): posternd between a
client that records every reply per recipient and faultsmtp, a scripted
backend with named faults (tests/e2e/faultsmtp.py).

"Acknowledged recipient deliveries" are the recipients whose RCPT got 2xx in a
transaction whose final DATA reply was 2xx: each must be at the backend in
that very message (matched by Message-ID), no other recipient may be there,
and posternd's summary line ("message ... rcpt=<a>,<b> ... status=delivered")
must name exactly the recipients the backend has. Either design the issue
allows passes: replaying MAIL and the accepted RCPTs on a new connection, or
answering every later RCPT and the DATA with 4xx.

Also: an end-of-data reply while a 2 MB body still streams (552 relayed, an
early 250 becomes 451, posternd keeps serving); a backend trickling the final
reply is dropped at backend_data; a paced 20 MB upload that outlasts
backend_command is delivered.

And the relay's setup steps (relay_smtp.c rs_steps[]): HELO after a refused
EHLO; STARTTLS, EHLO, XCLIENT, EHLO in that order; RSET after a refused DATA;
each command kind's timeout names what it waited for (rs_kinds[]).
"""

import time

import pytest

import faultsmtp as fs

RCPTS = ["a@example.test", "b@example.test", "c@example.test", "d@example.test"]

# posternd's own bounds: short, so no outcome waits long
OVR = ["timeouts.backend_connect=2s", "timeouts.backend_command=2s",
       "timeouts.backend_data=5s"]


@pytest.fixture
def make_fs():
    started = []

    def make(**kw):
        b = fs.FaultSMTP(**kw)
        started.append(b)
        return b.start()
    yield make
    for b in started:
        b.stop()


def plan_of(tag, n, size=None):
    """n messages, 4 recipients each, a unique sender and Message-ID each."""
    out = []
    for i in range(n):
        mid = "<%s-%d@client.test>" % (tag, i)
        out.append(("%s-%d@client.test" % (tag, i), list(RCPTS),
                    fs.make_message(mid, subject="%s %d" % (tag, i), size=size)))
    return out


def report(acc, results, be, d, limit=12):
    lines = []
    for k in ("lost", "extra", "dup", "unacked_delivery", "summary"):
        if acc[k]:
            lines.append("%s (%d):" % (k, len(acc[k])))
            lines += ["  " + x for x in acc[k][:limit]]
    lost_mids = {x.split(":", 1)[0] for x in acc["lost"][:3]}
    for r in results:
        if r is not None and r.message_id in lost_mids:
            lines.append("client saw: %r" % r)
            lines += ["  backend txn: %s" % {k: t[k] for k in ("conn", "fault", "rcpts", "outcome")}
                      for t in be.transactions if t["mail_from"] == r.mail_from]
            lines += ["  log: " + s["line"] for s in d.summaries()
                      if s.get("from", "").strip("<>") == r.mail_from]
    return "\n".join(lines)


def check_accounting(results, be, d):
    # the summary lines come with the final reply; give the log a moment
    time.sleep(0.3)
    acc = fs.account(results, be, d.summaries())
    bad = any(acc[k] for k in ("lost", "extra", "dup", "unacked_delivery", "summary"))
    assert not bad, ("recipient accounting failed (%d acknowledged recipient deliveries):\n%s"
                     % (acc["acked_total"], report(acc, results, be, d)))
    return acc


# ------------------------------------------------- a. recipient accounting ---

# (id, faultsmtp kwargs, client kwargs, posternd overrides, messages)
ACCOUNTING = [
    # the backend's idle timeout fires while the client pauses between RCPTs
    ("idle_close_between_rcpts",
     dict(fault="idle_close_between_rcpts", idle_delay=0.2),
     dict(pause_after_rcpt=1, pause=0.6), [], 6),
    # the same timeout with the next RCPT already in flight (pipelined)
    ("idle_close_pipelined",
     dict(fault="idle_close_between_rcpts", idle_delay=0.2), {}, [], 8),
    # posternd's own backend link sits idle longer than backend_command
    ("proxy_idle_between_rcpts", dict(fault="none"),
     dict(pause_after_rcpt=1, pause=2.5), [], 3),
    ("close_after_first_rcpt", dict(fault="close_after_first_rcpt"), {}, [], 8),
    ("421_at_second_rcpt", dict(fault="421_at_second_rcpt"), {}, [], 8),
    # controls: a plain 450 at RCPT 2 (the transaction survives), and no fault
    ("tempfail_second_rcpt", dict(fault="tempfail_second_rcpt"), {}, [], 8),
    ("none", dict(fault="none"), {}, [], 8),
]


@pytest.mark.parametrize("fault_kw,client_kw,ovr,n", [a[1:] for a in ACCOUNTING],
                         ids=[a[0] for a in ACCOUNTING])
def test_recipient_accounting(make_fs, make_posternd, fault_kw, client_kw, ovr, n):
    be = make_fs(**fault_kw)
    d = make_posternd(be.backend, overrides=OVR + ovr)
    tag = "acc-%s" % fault_kw["fault"]
    plan = plan_of(tag, n)
    results, errors = fs.run_sessions(d.port, plan, per_session=max(1, n // 2), threads=1,
                                      timeout=20, deadline=time.monotonic() + 60,
                                      **client_kw)
    assert not errors, errors
    assert all(r is not None for r in results), "not every message was attempted"
    acc = check_accounting(results, be, d)
    if fault_kw["fault"] in ("none", "tempfail_second_rcpt"):
        # nothing is lost there, and everything the backend took is acknowledged
        want = 4 if fault_kw["fault"] == "none" else 3
        assert acc["acked_total"] == want * n, [r for r in results]
    assert d.alive()


def test_random_faults_500(make_fs, make_posternd):
    """500 four-recipient pipelined messages, 25 per session over 4
    concurrent lanes, the backend faulting at random (seeded, keyed by
    sender, so interleaving does not change the choices)."""
    be = make_fs(fault="random", seed=7, once_per_sender=False, idle_delay=0.05)
    d = make_posternd(be.backend, settings={"log_level": "info"}, overrides=OVR)
    n = 500
    plan = plan_of("rnd", n)
    t0 = time.monotonic()
    results, errors = fs.run_sessions(d.port, plan, per_session=25, threads=4, timeout=20,
                                      deadline=t0 + 50)
    took = time.monotonic() - t0
    attempted = sum(r is not None for r in results)
    assert attempted == n, "only %d of %d messages attempted in %.1fs" % (attempted, n, took)
    assert len(errors) < 5, errors
    acc = check_accounting(results, be, d)
    faulted = sum(1 for t in be.transactions if t["fault"] != "none")
    assert faulted > 50, "the backend faulted only %d transactions" % faulted
    print("random: %.1fs, %d backend transactions (%d faulted), %d connections, %d "
          "acknowledged recipient deliveries, %d messages 2xx"
          % (took, len(be.transactions), faulted, be.connections, acc["acked_total"],
             sum(1 for r in results if r.decided_ok)))
    assert acc["acked_total"] > 0.2 * 4 * n, (
        "only %d acknowledged recipient deliveries of %d" % (acc["acked_total"], 4 * n))
    assert d.alive()


# ----------------------------------------- b. early end-of-data replies ---

# (fault, what the backend does after it, early_kb, message MiB). early_kb=0
# sends the early reply in the same write as the 354, so posternd has it
# while it is still streaming the first 256 KiB: no race. A reply after 64
# KiB races with posternd's writes into the loopback socket buffers (about
# 4.3 MB here): at 2 MB the whole body and "." may be queued before the
# reply arrives, and then an early 250 is indistinguishable from a real one;
# so the 64 KiB case of early_250 streams 12 MB.
EARLY = [("early_552", "discard", 64, 2), ("early_552", "close", 64, 2),
         ("early_552", "discard", 0, 2), ("early_250", "discard", 0, 2),
         ("early_250", "close", 0, 2), ("early_250", "discard", 64, 12)]


@pytest.mark.parametrize("fault,after,early_kb,mib", EARLY,
                         ids=["%s-%s-%dk-%dMB" % e for e in EARLY])
def test_early_eod_reply_during_stream(make_fs, make_posternd, fault, after, early_kb, mib):
    """An end-of-data reply while the body still streams: a 552 is relayed,
    a 250 is a protocol error (4xx to the client, never a delivery), and
    posternd neither crashes nor stops serving."""
    be = make_fs(fault=[fault], early_kb=early_kb, early_after=after, io_timeout=15)
    d = make_posternd(be.backend, overrides=OVR)
    mid = "<early-%s-%s-%d@client.test>" % (fault, after, early_kb)
    msg = fs.make_message(mid, size=mib * 1024 * 1024)
    c = fs.RecordingClient(d.port, timeout=20)
    r = c.transaction("early@client.test", RCPTS[:2], msg, final_timeout=20)
    # stay connected a moment: the backend drains the rest of the stream, so
    # posternd's write callbacks run while the session (and relay) still exist
    time.sleep(0.5)
    c.quit()
    assert r.data is not None and r.data.code == 354, r
    assert r.final is not None, "no end-of-data reply: %r (posternd alive: %s)" % (r, d.alive())
    if fault == "early_552" and after == "discard":
        assert r.final.code == 552, r
    elif fault == "early_552":
        # the backend's 552, unless the close tore it away (then 4xx)
        assert r.final.code == 552 or 400 <= r.final.code < 500, r
    else:
        # 250 before the terminator is a protocol error, never a delivery
        assert 400 <= r.final.code < 500 and r.final.lines[0].startswith("4."), r
    assert be.delivered() == [], be.delivered()
    assert d.alive(), "posternd died: %s" % d.log()[-2000:]
    # posternd keeps serving: a normal message in a new session
    c = fs.RecordingClient(d.port, timeout=20)
    ok = c.transaction("after@client.test", RCPTS[:2],
                       fs.make_message("<after-early@client.test>"))
    c.quit()
    assert ok.decided_ok, ok
    got = be.by_message_id().get("<after-early@client.test>", [])
    assert len(got) == 1 and sorted(got[0]["rcpts"]) == RCPTS[:2], got
    assert d.alive()


# ----------------------------------- c. trickled final reply: backend_data ---

def test_trickled_final_reply_dropped_at_backend_data(make_fs, make_posternd):
    backend_data = 3.0
    be = make_fs(fault=["trickle_final"], trickle_interval=1.0, trickle_lines=60)
    d = make_posternd(be.backend, overrides=["timeouts.backend_command=3s",
                                             "timeouts.backend_data=3s"])
    c = fs.RecordingClient(d.port, timeout=20)
    slack = 4.0
    r = c.transaction("trickle@client.test", RCPTS[:1],
                      fs.make_message("<trickle@client.test>"),
                      final_timeout=backend_data + slack)
    c.quit()
    assert r.final is not None, ("no reply within backend_data %.0fs + %.0fs: %s"
                                 % (backend_data, slack, r.error))
    took = r.t_final - r.t_dot
    assert 400 <= r.final.code < 500, r
    assert took <= backend_data + slack, took
    assert be.delivered() == [], be.delivered()
    # the trickling connection is gone (posternd dropped it)
    assert be.wait_idle(5.0), "posternd still holds the trickling backend connection"
    c = fs.RecordingClient(d.port, timeout=20)
    ok = c.transaction("after@client.test", RCPTS[:1],
                       fs.make_message("<after-trickle@client.test>"))
    c.quit()
    assert ok.decided_ok, ok
    assert d.alive()


# -------------------- d. a paced 20 MB upload outlasting backend_command ---

def paced(total_s, chunk=256 * 1024):
    def pacer(send, payload):
        n = (len(payload) + chunk - 1) // chunk
        step = total_s / n
        t0 = time.monotonic()
        for i in range(n):
            send(payload[i * chunk:(i + 1) * chunk])
            delay = t0 + (i + 1) * step - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    return pacer


UPLOAD = [("plain_backend", None), ("backend_idle_timeout_3s", 3.0)]


@pytest.mark.parametrize("idle", [u[1] for u in UPLOAD], ids=[u[0] for u in UPLOAD])
def test_slow_20mb_upload_delivered(make_fs, make_posternd, idle):
    """backend_command=2s, the body takes ~6 s to arrive. With
    idle_timeout=3 the backend itself drops a link idle for 3 s (as real
    MTAs do), so posternd must keep it alive (NOOP) or recover."""
    be = make_fs(fault="none", idle_timeout=idle, keep_data_max=32 * 1024 * 1024,
                 io_timeout=30)
    d = make_posternd(be.backend, settings={"log_level": "info"},
                      overrides=["timeouts.backend_connect=2s", "timeouts.backend_command=2s",
                                 "timeouts.backend_data=10s"])
    mid = "<upload20-%s@client.test>" % (idle or 0)
    msg = fs.make_message(mid, size=20 * 1024 * 1024)
    c = fs.RecordingClient(d.port, timeout=30)
    t0 = time.monotonic()
    r = c.transaction("upload@client.test", RCPTS[:2], msg, body_pacer=paced(6.0),
                      final_timeout=30)
    c.quit()
    print("upload: %.1fs to send, final %s after %.1fs; backend connections %d, NOOPs %d, "
          "notes %s" % ((r.t_dot or t0) - t0, r.final, (r.t_final or t0) - (r.t_dot or t0),
                        be.connections, be.noops, be.notes[-3:]))
    assert r.t_dot is None or r.t_dot - t0 > 4.0, "the upload was not slow"
    assert r.decided_ok, "%r\nbackend notes: %s\nNOOPs seen: %d" % (r, be.notes[-5:], be.noops)
    got = be.by_message_id().get(mid, [])
    assert len(got) == 1, got
    assert sorted(got[0]["rcpts"]) == RCPTS[:2]
    assert got[0]["data"] is not None and got[0]["data"].endswith(msg), \
        "the message was altered (size %d, sent %d)" % (got[0]["size"], len(msg))
    assert d.alive()


# ------------------------- e. the relay's setup steps and their timeouts ---

def relay_commands(be):
    """The command lines of the first connection that carried a MAIL (not
    posternd's start-up probe, which says EHLO and QUIT)"""
    with be.lock:
        cmds = list(be.commands)
    conn = next(n for n, c in cmds if c.upper().startswith("MAIL"))
    return [c for n, c in cmds if n == conn]


def verbs(be):
    """The verbs of relay_commands(be), in order"""
    return [c.split(" ", 1)[0].upper() for c in relay_commands(be)]


def test_helo_fallback(make_fs, make_posternd):
    """A backend that refuses EHLO (502) gets HELO, and the message."""
    be = make_fs(refuse_ehlo=True)
    d = make_posternd(be.backend, overrides=OVR)
    c = fs.RecordingClient(d.port, timeout=20)
    r = c.transaction("helo@client.test", RCPTS[:1], fs.make_message("<helo@client.test>"))
    c.quit()
    assert r.decided_ok, r
    assert verbs(be)[:3] == ["EHLO", "HELO", "MAIL"], be.seen_commands
    assert [m["mail_from"] for m in be.delivered()] == ["helo@client.test"]


def test_starttls_then_xclient_steps(make_fs, make_posternd, workdir):
    """STARTTLS (offered, opportunistic), EHLO over TLS, XCLIENT, EHLO with
    the client's name: in that order, each once."""
    import pxtransport as pt
    cert, key = pt.make_cert(workdir / "fscert", "backend.test")
    be = make_fs(tls=(cert, key), ehlo=fs.DEFAULT_EHLO + ("XCLIENT NAME ADDR PORT HELO PROTO",))
    d = make_posternd(be.backend, overrides=OVR,
                      settings={"backend_tls": {"mode": "opportunistic"}})
    c = fs.RecordingClient(d.port, timeout=20, helo="client.test")
    r = c.transaction("steps@client.test", RCPTS[:1], fs.make_message("<steps@client.test>"))
    c.quit()
    assert r.decided_ok, r
    assert verbs(be)[:6] == ["EHLO", "STARTTLS", "EHLO", "XCLIENT", "EHLO", "MAIL"], \
        be.seen_commands
    assert relay_commands(be)[4] == "EHLO client.test", be.seen_commands
    assert len(be.sni) == 1, be.sni
    assert d.grep(r"relay tls version=TLSv1\.[23] ")
    assert d.grep(r"relay forward=xclient client=127\.0\.0\.1")


def test_refused_data_resets_the_backend_transaction(make_fs, make_posternd):
    """A refused DATA ends no transaction at the backend: the relay sends
    RSET, so the next MAIL on the same link is not a "nested MAIL"."""
    be = make_fs()
    d = make_posternd(be.backend, overrides=OVR)
    c = fs.RecordingClient(d.port, timeout=20)
    r1 = c.transaction("first@client.test", ["data-tempfail@example.test"],
                       fs.make_message("<refused@client.test>"))
    r2 = c.transaction("second@client.test", RCPTS[:1], fs.make_message("<next@client.test>"))
    c.quit()
    assert r1.final is not None and r1.final.code == 451, r1    # DATA refused at the backend
    assert r2.decided_ok, r2
    assert be.sessions == 2, be.sessions                        # the probe, then the relay
    v = verbs(be)
    assert v[v.index("DATA") + 1] == "RSET", be.seen_commands
    assert [m["mail_from"] for m in be.delivered()] == ["second@client.test"]


@pytest.mark.parametrize("local,word", [("stall-rcpt", "the reply to RCPT"),
                                        ("stall-data", "the reply to DATA"),
                                        ("stall-eod", "the reply to the end of data")])
def test_timeout_names_what_it_waited_for(make_fs, make_posternd, local, word):
    """Each command kind's timeout (rs_kinds[]): a 4xx naming what the relay
    waited for, and a log line with cmd=."""
    be = make_fs()
    d = make_posternd(be.backend, overrides=OVR)
    c = fs.RecordingClient(d.port, timeout=20)
    r = c.transaction("stall@client.test", [local + "@example.test"],
                      fs.make_message("<%s@client.test>" % local), final_timeout=15)
    c.quit()
    got = [x for x in (r.rcpt_replies[0], r.data, r.final) if x is not None and x.code >= 400]
    assert got and 400 <= got[0].code < 500, r
    assert any(word in l for l in got[0].lines), got[0]
    assert d.wait_log(r'relay error backend=\S+ state=ready cmd=\S+ reason="backend timed '
                      r'out waiting for %s \(\d+ ms\)"' % word)
    assert be.delivered() == []
