"""j. Invariant 3: what goes to the backend is clean SMTP. After each end-of-DATA
look-alike of the SMTP smuggling family (CVE-2023-51764, RFC 5321 4.1.1.4)
no second message may appear at the backend, and whatever the backend gets
has no bare CR or LF."""

import re

import pytest

import pxtest as px

SEQUENCES = [b"\n.\n", b"\r.\r", b"\r.\n", b"\n.\r", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n",
             b"\r\n.\r", b"\r\n\x00.\r\n", b"\r\n.\x00\r\n", b"\r\n.\r\r\n", b"\r\r\n.\r\r\n"]


def no_bare_cr_lf(data):
    return re.search(rb"\r(?!\n)|(?<!\r)\n", data) is None


@pytest.mark.parametrize("seq", SEQUENCES, ids=[repr(s)[2:-1] for s in SEQUENCES])
def test_smuggled_message_never_reaches_backend(make_fault_backend, make_posternd, seq):
    be = make_fault_backend()
    d = make_posternd("smtp:" + be.address)
    head = px.make_message(subject="smuggle", body=b"first part\r\n")[:-2]
    smuggled = (b"MAIL FROM:<evil@attacker.test>\r\nRCPT TO:<victim@example.test>\r\n"
                b"DATA\r\nFrom: ceo@example.test\r\nSubject: smuggled\r\n\r\nsmuggled\r\n")
    payload = head + seq + smuggled + b"\r\n.\r\n"
    finals = []
    with px.SmtpClient(d.port) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd("MAIL FROM:<honest@client.test>").code == 250
        assert c.cmd("RCPT TO:<user@example.test>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(payload)
        # read whatever replies come (a refusal may come early, and the
        # session may then be closed); bounded by count
        try:
            for _ in range(6):
                finals.append(c.reply())
                if finals[-1].code in (250, 421) or finals[-1].code >= 500:
                    break
        except (ConnectionError, OSError):
            pass
        try:
            finals.append(c.cmd("QUIT"))
        except (ConnectionError, OSError, px.SmtpError):
            pass
    senders = [a["mail_from"] for a in be.accepted]
    assert "evil@attacker.test" not in senders, "smuggled message reached the backend"
    assert all(r.startswith("user@") for a in be.accepted for r in a["rcpts"]), be.accepted
    for a in be.accepted:
        assert no_bare_cr_lf(a["data"]), "bare CR/LF passed to the backend: %r" % a["data"]
    assert len(be.accepted) <= 1
    assert not [x for x in be.seen_commands if "evil@" in x], be.seen_commands
    assert d.alive()
