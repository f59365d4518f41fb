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


# smtp-sink switches -> what they do
SINK_FAULTS = [
    (["-q", "RCPT"], "disconnects at RCPT"),
    (["-Q", "RCPT"], "421 at RCPT"),
    (["-q", "DATA"], "disconnects at DATA"),
    (["-Q", "DATA"], "421 at DATA"),
    (["-r", "DATA"], "tempfails DATA"),
    (["-q", "."], "disconnects at end of data"),
    (["-Q", "."], "421 at end of data"),
    (["-r", "."], "tempfails end of data"),
    (["-W", "RCPT:20"], "20 s silent at RCPT"),
    (["-w", "20"], "20 s silent at DATA"),
    (["-W", ".:20"], "20 s silent at end of data"),
]


@pytest.mark.parametrize("opts,what", SINK_FAULTS, ids=[w for _, w in SINK_FAULTS])
def test_smtp_sink_fault(make_sink, make_posternd, opts, what):
    sink = make_sink(opts)
    d = make_posternd("smtp:" + sink.address, overrides=FAST_TIMEOUTS)
    for i in range(PER_FAULT):
        _, _, final = one(d.port, i, tag="sink")
        assert_tempfail(final, "backend %s, message %d" % (what, i))
    # smtp-sink never acknowledged any message, so the client must not
    # have a 250 for any; posternd keeps serving.
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
