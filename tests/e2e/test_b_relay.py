"""b. RCPT is relayed live: a backend's rejection of one recipient reaches the
client with the backend's code, and the other recipients are delivered."""

import os
import re

import pxtest as px


def enhanced(reply):
    m = re.match(r"^([245]\.\d{1,3}\.\d{1,3})\b", reply.lines[0])
    return m.group(1) if m else None


def test_postfix_rejects_one_recipient(postfix_backend, make_posternd):
    """Postfix's check_recipient_access rejects reject@ (550 5.1.1) and
    tempfails tempfail@ (450 4.2.0); the client sees those codes, and the
    message reaches the accepted recipients only."""
    pf, sink = postfix_backend
    d = make_posternd("smtp:127.0.0.1:%d" % pf.port)
    sender = "b1-%s@client.test" % os.path.basename(d.workdir)
    msg = px.make_message()
    with px.SmtpClient(d.port) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd("MAIL FROM:<%s>" % sender).code == 250
        r1 = c.cmd("RCPT TO:<user@example.test>")
        r2 = c.cmd("RCPT TO:<reject@example.test>")
        r3 = c.cmd("RCPT TO:<tempfail@example.test>")
        r4 = c.cmd("RCPT TO:<other@example.test>")
        _, final = c.data(msg)
        c.quit()
    assert r1.code == 250 and r4.code == 250, (r1, r4)
    assert r2.code == 550 and enhanced(r2) == "5.1.1", r2
    assert "rejected by backend map" in r2.text, r2
    assert r3.code == 450 and enhanced(r3) == "4.2.0", r3
    assert final is not None and final.code == 250, final
    got = sink.wait_for(1, mail_from=sender)
    assert len(got) == 1
    assert sorted(got[0].rcpts) == ["other@example.test", "user@example.test"]


def test_python_backend_rejects_one_recipient(make_fault_backend, make_posternd):
    be = make_fault_backend()
    d = make_posternd("smtp:" + be.address)
    msg = px.make_message()
    with px.SmtpClient(d.port) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd("MAIL FROM:<b2@client.test>").code == 250
        r = [c.cmd("RCPT TO:<%s@example.test>" % lp)
             for lp in ("ok1", "rcpt-reject", "rcpt-tempfail", "ok2")]
        _, final = c.data(msg)
        c.quit()
    assert [x.code for x in r] == [250, 550, 450, 250], r
    assert enhanced(r[1]) == "5.1.1" and enhanced(r[2]) == "4.2.1", r
    assert final.code == 250, final
    assert len(be.accepted) == 1
    assert be.accepted[0]["rcpts"] == ["ok1@example.test", "ok2@example.test"]
    rec, rest = px.pop_header_field(be.accepted[0]["data"])
    assert px.parse_postern_received(rec)["for"] is None
    assert rest == msg


def test_smtp_sink_rejects_every_recipient(make_sink, make_posternd):
    """smtp-sink -f RCPT: every RCPT gets the backend's 5xx; DATA is then
    refused and nothing reaches the backend."""
    sink = make_sink(["-f", "RCPT", "-B", "550 5.1.1 sink says no"])
    d = make_posternd("smtp:" + sink.address)
    with px.SmtpClient(d.port) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd("MAIL FROM:<b3@client.test>").code == 250
        r1 = c.cmd("RCPT TO:<a@example.test>")
        r2 = c.cmd("RCPT TO:<b@example.test>")
        dr = c.cmd("DATA")
        c.quit()
    for r in (r1, r2):
        assert r.code == 550 and enhanced(r) == "5.1.1", r
        assert "sink says no" in r.text, r
    assert dr.code in (503, 554), dr
    assert sink.count() == 0


def test_smtp_sink_tempfails_every_recipient(make_sink, make_posternd):
    sink = make_sink(["-r", "RCPT", "-b", "452 4.2.2 sink is full"])
    d = make_posternd("smtp:" + sink.address)
    with px.SmtpClient(d.port) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd("MAIL FROM:<b4@client.test>").code == 250
        r1 = c.cmd("RCPT TO:<a@example.test>")
        dr = c.cmd("DATA")
        c.quit()
    assert r1.code == 452 and enhanced(r1) == "4.2.2", r1
    assert dr.code in (503, 554), dr
    assert sink.count() == 0


def test_backend_lost_between_recipients(make_fault_backend, make_posternd):
    """The backend closes the connection at the second RCPT: the first
    recipient's 250 is void, so the message must end in 4xx, not 250."""
    be = make_fault_backend()
    d = make_posternd("smtp:" + be.address, overrides=["timeouts.backend_command=2s"])
    with px.SmtpClient(d.port) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd("MAIL FROM:<lost@client.test>").code == 250
        r1 = c.cmd("RCPT TO:<ok@example.test>")
        r2 = c.cmd("RCPT TO:<rcpt-drop@example.test>")
        final = None
        try:
            if r2.code != 421:
                _, final = c.data(px.make_message())
        except (ConnectionError, OSError):
            final = None
        c.close()
    assert r1.code == 250, r1
    assert 400 <= r2.code < 500, r2
    if r2.code != 421:
        assert final is None or 400 <= final.code < 500, final
    assert be.accepted == []
