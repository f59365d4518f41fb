"""t6. CHUNKING / BDAT from clients (RFC 3030; issue 3, must-show 4).

BDAT from a raw-socket client reaches a backend without CHUNKING as a
correct, dot-stuffed DATA transfer, and a backend with CHUNKING (Postfix)
as BDAT; mixed BDAT/DATA and a missing LAST are refused; the smuggling,
NUL and size checks apply to chunks too."""

import os
import re

import pxtest as px


def test_bdat_to_backend_without_chunking_becomes_data(make_fault_backend, make_posternd):
    be = make_fault_backend()                   # its EHLO has no CHUNKING
    d = make_posternd("smtp:" + be.address)
    msg = px.make_message(subject="chunks", body=b".leading dot\r\n..two dots\r\n.\r\nend\r\n")
    replies = px.bdat_session(d.port, "bdat1@client.test", [msg[:50], msg[50:90], msg[90:]])
    assert [r.code for r in replies] == [250, 250, 250], replies
    assert replies[0].lines[0].startswith("2.0.0")
    assert len(be.accepted) == 1
    rec, rest = px.pop_header_field(be.accepted[0]["data"])
    px.parse_postern_received(rec)
    assert rest == msg                           # unstuffed by the backend: we stuffed
    assert "DATA" in be.seen_commands
    assert not any(c.startswith("BDAT") for c in be.seen_commands)


def test_bdat_to_backend_with_chunking_stays_bdat(postfix_backend, make_posternd):
    pf, sink = postfix_backend
    d = make_posternd("smtp:127.0.0.1:%d" % pf.port)
    sender = "bdat2-%s@client.test" % os.path.basename(d.workdir)
    msg = px.make_message(subject="chunks to postfix")
    replies = px.bdat_session(d.port, sender, [msg[:100], msg[100:]])
    assert [r.code for r in replies] == [250, 250], replies
    got = sink.wait_for(1, mail_from=sender)
    assert len(got) == 1
    _, rest = px.pop_header_field(got[0].content)       # Postfix's Received
    rec, body = px.pop_header_field(rest)
    px.parse_postern_received(rec)
    assert body == px.normalise(msg)
    assert d.grep(r'relay send="BDAT \d+ LAST"')
    px.wait_until(lambda: re.search(r"disconnect from .* bdat=1 ", pf.log()), px.DELIVERY_WAIT,
                  "Postfix counting one BDAT command")


def test_mixed_bdat_and_data_refused(sink, make_posternd):
    d = make_posternd("smtp:" + sink.address)
    with px.SmtpClient(d.port) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd("MAIL FROM:<mixed@client.test>").code == 250
        assert c.cmd("RCPT TO:<user@example.test>").code == 250
        c.send(b"BDAT 12\r\nSubject: x\r\n")
        assert c.reply().code == 250
        r = c.cmd("DATA")
        assert r.code == 503 and r.lines[0].startswith("5.5.1"), r
        r = c.cmd("MAIL FROM:<again@client.test>")
        assert r.code == 503, r
        assert c.cmd("RSET").code == 250
        c.quit()
    assert sink.find(mail_from="mixed@client.test") == []


def test_missing_last_delivers_nothing(sink, make_posternd):
    d = make_posternd("smtp:" + sink.address)
    msg = px.make_message(subject="never finished")
    with px.SmtpClient(d.port) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd("MAIL FROM:<nolast2@client.test>").code == 250
        assert c.cmd("RCPT TO:<user@example.test>").code == 250
        c.send(b"BDAT %d\r\n" % len(msg) + msg)
        assert c.reply().code == 250
        assert c.cmd("QUIT").code == 221
    # a finished message on another connection, then: only it is there
    assert px.bdat_session(d.port, "withlast@client.test", [msg])[0].code == 250
    assert len(sink.wait_for(1, mail_from="withlast@client.test")) == 1
    assert sink.find(mail_from="nolast2@client.test") == []


def test_bdat_checks_bare_lf_nul_size(sink, make_posternd):
    d = make_posternd("smtp:" + sink.address, settings={"limits": {"message_size_max": "4k"}})
    cases = [(b"Subject: a\r\n\r\nbare\nline\r\n", 554, "5.5.2"),
             (b"Subject: a\r\n\r\nnul\x00byte\r\n", 554, "5.6.0"),
             (b"Subject: a\r\n\r\n" + b"z" * 5000 + b"\r\n", 552, "5.3.4")]
    for i, (body, code, esc) in enumerate(cases):
        replies = px.bdat_session(d.port, "check%d@client.test" % i, [body[:10], body[10:]])
        assert replies[0].code == 250
        assert replies[1].code == code and replies[1].lines[0].startswith(esc), replies
        assert sink.find(mail_from="check%d@client.test" % i) == []


def test_bdat_out_of_place_consumes_its_chunk(sink, make_posternd):
    """A refused BDAT still has its bytes read: they never run as commands."""
    d = make_posternd("smtp:" + sink.address)
    with px.SmtpClient(d.port) as c:
        c.greeting()
        c.ehlo()
        chunk = b"MAIL FROM:<evil@client.test>\r\n"
        c.send(b"BDAT %d LAST\r\n" % len(chunk) + chunk)
        r = c.reply()
        assert r.code == 503, r
        assert c.cmd("NOOP").code == 250
        assert c.cmd("RCPT TO:<user@example.test>").code == 503    # no MAIL ran
    r = None
    with px.SmtpClient(d.port) as c:
        c.greeting()
        c.ehlo()
        c.send(b"BDAT 1x\r\n")
        r = c.reply()
        assert r.code == 421, r


def test_bdat_zero_length_last(sink, make_posternd):
    d = make_posternd("smtp:" + sink.address)
    msg = px.make_message(subject="zero last")
    replies = px.bdat_session(d.port, "zero@client.test", [msg, b""])
    assert [r.code for r in replies] == [250, 250], replies
    got = sink.wait_for(1, mail_from="zero@client.test")
    assert px.pop_header_field(got[0].content)[1] == px.normalise(msg)
