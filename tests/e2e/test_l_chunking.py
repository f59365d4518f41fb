"""l. CHUNKING (RFC 3030), when posternd offers it: BDAT chunks reach the
backend as exactly the bytes sent, whatever the backend speaks (smtp-sink has
no CHUNKING, so posternd must relay with DATA and dot-stuff); a lone "." line
inside a chunk is content, never an end of data."""

import pytest

import pxtest as px


def chunking_session(port):
    c = px.SmtpClient(port)
    c.greeting()
    kw = px.ehlo_keywords(c.ehlo())
    if "CHUNKING" not in kw:
        c.quit()
        pytest.skip("posternd does not offer CHUNKING")
    return c


def bdat(c, chunk, last=False):
    c.send(b"BDAT %d%s\r\n" % (len(chunk), b" LAST" if last else b"") + chunk)
    return c.reply()


def test_bdat_chunks_arrive_exact(sink, make_posternd):
    d = make_posternd("smtp:" + sink.address)
    msg = px.make_message(subject="bdat", body=b".\r\n..\r\n.x\r\nend\r\n")
    c = chunking_session(d.port)
    assert c.cmd("MAIL FROM:<bdat@client.test>").code == 250
    assert c.cmd("RCPT TO:<user@example.test>").code == 250
    # split inside a CRLF, right before a "." line, and one empty chunk
    cut1 = msg.index(b"\r\n") + 1
    cut2 = msg.index(b"\r\n.\r\n") + 2
    for chunk in (msg[:cut1], msg[cut1:cut2]):
        r = bdat(c, chunk)
        assert r.code == 250, r
    r = bdat(c, msg[cut2:])
    assert r.code == 250, r
    final = bdat(c, b"", last=True)
    assert final.code == 250, final
    c.quit()
    got = sink.wait_for(1, mail_from="bdat@client.test")
    assert len(got) == 1
    rec, rest = px.pop_header_field(got[0].content)
    px.parse_postern_received(rec)
    assert rest == px.normalise(msg)


def test_bdat_embedded_end_of_data_is_content(make_fault_backend, make_posternd):
    """A chunk holding CRLF.CRLF and SMTP commands after it: one message at the
    backend, with those lines as its content."""
    be = make_fault_backend()
    d = make_posternd("smtp:" + be.address)
    msg = px.make_message(subject="bdat smuggle",
                          body=b"before\r\n.\r\nMAIL FROM:<evil@attacker.test>\r\n"
                               b"RCPT TO:<victim@example.test>\r\nDATA\r\nevil\r\n.\r\nafter\r\n")
    c = chunking_session(d.port)
    assert c.cmd("MAIL FROM:<honest@client.test>").code == 250
    assert c.cmd("RCPT TO:<ok@example.test>").code == 250
    final = bdat(c, msg, last=True)
    assert final.code == 250, final
    c.quit()
    assert [a["mail_from"] for a in be.accepted] == ["honest@client.test"]
    rec, rest = px.pop_header_field(be.accepted[0]["data"])
    px.parse_postern_received(rec)
    assert rest == msg
    assert not [x for x in be.seen_commands if "evil@" in x]


def test_bdat_backend_tempfail(make_fault_backend, make_posternd):
    be = make_fault_backend()
    d = make_posternd("smtp:" + be.address)
    c = chunking_session(d.port)
    assert c.cmd("MAIL FROM:<t@client.test>").code == 250
    assert c.cmd("RCPT TO:<eod-tempfail@example.test>").code == 250
    final = bdat(c, px.make_message(), last=True)
    assert 400 <= final.code < 500, final
    # the session goes on: a second transaction is delivered
    assert c.cmd("MAIL FROM:<t2@client.test>").code == 250
    assert c.cmd("RCPT TO:<ok@example.test>").code == 250
    final = bdat(c, px.make_message(), last=True)
    assert final.code == 250, final
    c.quit()
    assert [a["mail_from"] for a in be.accepted] == ["t2@client.test"]


def test_bdat_via_postfix(postfix_backend, make_posternd):
    """Postfix offers CHUNKING: BDAT chunks (with "." lines inside) arrive
    intact through posternd and Postfix."""
    import os
    pf, sink = postfix_backend
    d = make_posternd("smtp:127.0.0.1:%d" % pf.port)
    sender = "bdat-%s@client.test" % os.path.basename(d.workdir)
    msg = px.make_message(subject="bdat postfix", body=b"a\r\n.\r\n..\r\nb\r\n" * 50)
    c = chunking_session(d.port)
    assert c.cmd("MAIL FROM:<%s>" % sender).code == 250
    assert c.cmd("RCPT TO:<user@example.test>").code == 250
    half = len(msg) // 2 + 1
    assert bdat(c, msg[:half]).code == 250
    final = bdat(c, msg[half:], last=True)
    assert final.code == 250, final
    c.quit()
    got = sink.wait_for(1, mail_from=sender)
    assert len(got) == 1
    pf_rec, rest = px.pop_header_field(got[0].content)
    assert b"(Postfix)" in pf_rec
    rec, body = px.pop_header_field(rest)
    px.parse_postern_received(rec)
    assert body == px.normalise(msg)
