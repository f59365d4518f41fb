"""t2. SMTP smuggling (CVE-2023-51764 family; issue 3 must-show 5).

Each false end-of-data sequence is sent with a smuggled second transaction
behind it, then the real CRLF.CRLF. Postern must not end the message at the
false sequence: by default it refuses the whole message (554) at the real
end; for a network in normalize_bare_networks it normalises bare CR/LF and
accepts the message with the smuggled text as text. Either way no second
message reaches the backend, and the smuggled commands never run.
"""

import pytest

import pxtest as px

SEQUENCES = [b"\n.\n", b"\r.\r", b"\r.\n", b"\n.\r", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n",
             b"\r\n.\r", b"\r\n\x00.\r\n", b"\r\n.\x00\r\n", b"\r\n.\r\r\n", b"\r\r\n.\r\r\n"]

SMUGGLED = (b"MAIL FROM:<evil@client.test>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\n"
            b"From: evil@client.test\r\nSubject: smuggled\r\n\r\nsmuggled body\r\n")


def smuggle(d, sender, seq):
    """One session: the message with seq + a smuggled transaction inside.
    Returns (final reply, reply to the QUIT that follows)."""
    with px.SmtpClient(d.port) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd("MAIL FROM:<%s>" % sender).code == 250
        assert c.cmd("RCPT TO:<user@example.test>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(b"From: " + sender.encode() + b"\r\nSubject: first\r\n\r\nfirst part"
               + seq + SMUGGLED + b"\r\n.\r\n")
        final = c.reply()
        after = c.cmd("QUIT")
    return final, after


@pytest.mark.parametrize("seq", SEQUENCES, ids=[repr(s)[2:-1] for s in SEQUENCES])
def test_refused_and_nothing_smuggled(sink, make_posternd, seq):
    d = make_posternd("smtp:" + sink.address)
    sender = "smuggle-%d@client.test" % SEQUENCES.index(seq)
    final, after = smuggle(d, sender, seq)
    assert final.code == 554, final
    assert final.lines[0].split()[0] in ("5.5.2", "5.6.0"), final
    assert after.code == 221, after           # the smuggled MAIL did not run
    # a control message on a new connection proves the backend is reachable
    res = px.send_message(d.port, px.make_message(), mail_from="control@client.test")
    assert res["final"].code == 250
    assert len(sink.wait_for(1, mail_from="control@client.test")) == 1
    assert sink.find(mail_from="evil@client.test") == []
    assert sink.find(mail_from=sender) == []


@pytest.mark.parametrize("seq", SEQUENCES, ids=[repr(s)[2:-1] for s in SEQUENCES])
def test_normalised_for_legacy_network_nothing_smuggled(sink, make_posternd, seq):
    """normalize_bare_networks: bare CR/LF become CRLF, the message stays
    open until the real CRLF.CRLF, and goes out as one clean message."""
    d = make_posternd("smtp:" + sink.address,
                      settings={"normalize_bare_networks": ["127.0.0.0/8"]})
    sender = "legacy-%d@client.test" % SEQUENCES.index(seq)
    final, after = smuggle(d, sender, seq)
    assert after.code == 221, after
    if b"\x00" in seq:
        assert final.code == 554 and final.lines[0].startswith("5.6.0"), final
        got = []
    else:
        assert final.code == 250, final
        got = sink.wait_for(1, mail_from=sender)
        assert len(got) == 1
        assert b"smuggled body" in got[0].content       # text, not a transaction
        assert b"\r" not in got[0].content.replace(b"\n", b"")
    res = px.send_message(d.port, px.make_message(), mail_from="control2@client.test")
    assert res["final"].code == 250
    sink.wait_for(1, mail_from="control2@client.test")
    assert sink.find(mail_from="evil@client.test") == []
    assert len(sink.find(mail_from=sender)) == len(got)
