"""t8. SMTP AUTH on a submission listener (issue 3, must-show 9).

The accounts live on the backend side: an aiosmtpd server with an
authenticator is auth.backend (a real SMTP server that checks AUTH PLAIN);
the mail goes to the private Postfix, which learns the login through
XCLIENT LOGIN=. The client is not in trusted_networks, so only AUTH lets
it relay."""

import base64
import os
import re

import pytest

import pxtest as px
import pxtransport as pt

ACCOUNTS = {"alice": "s3cret pass", "bob": "hunter2"}


@pytest.fixture
def accounts():
    b = pt.AuthBackend(ACCOUNTS).start()
    yield b
    b.stop()


@pytest.fixture
def submission(postfix_backend, make_posternd, accounts, workdir):
    pf, sink = postfix_backend
    cert, key = pt.make_cert(workdir / "certs", "mx.test")
    port = px.free_port()
    d = make_posternd("smtp:127.0.0.1:%d" % pf.port, port=port, settings={
        "listen": [],
        'listener "submission"': {"address": "127.0.0.1:%d" % port, "auth": True},
        "tls": {"certificate": [cert], "key": [key]},
        "trusted_networks": ["192.0.2.0/24"],
        "auth": {"backend": "smtp:" + accounts.address, "failures_max": 2},
    })
    return d, pf, sink, accounts


def plain(user, password):
    return base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()


def tls_session(d):
    c = pt.Client(d.port)
    c.greeting()
    c.ehlo()
    assert c.starttls().code == 220
    kw = px.ehlo_keywords(c.ehlo())
    assert kw.get("AUTH", "").split() == ["PLAIN", "LOGIN"], kw
    return c


def test_auth_without_tls_refused(submission):
    d = submission[0]
    with pt.Client(d.port) as c:
        c.greeting()
        assert "AUTH" not in px.ehlo_keywords(c.ehlo())
        r = c.cmd("AUTH PLAIN " + plain("alice", ACCOUNTS["alice"]))
        assert r.code == 538 and r.lines[0].startswith("5.7.11"), r


def test_auth_plain_good_credentials_relay(submission):
    d, pf, sink, accounts = submission
    sender = "alice-%s@client.test" % os.path.basename(d.workdir)
    with tls_session(d) as c:
        assert c.cmd("MAIL FROM:<%s>" % sender).code == 250
        r = c.cmd("RCPT TO:<someone@other.test>")        # not ours, not trusted
        assert r.code == 554 and r.lines[0].startswith("5.7.1"), r
        assert c.cmd("RSET").code == 250
        r = c.cmd("AUTH PLAIN " + plain("alice", ACCOUNTS["alice"]))
        assert r.code == 235 and r.lines[0].startswith("2.7.0"), r
        assert c.cmd("MAIL FROM:<%s>" % sender).code == 250
        assert c.cmd("RCPT TO:<someone@other.test>").code == 250   # may relay now
        assert c.data(px.make_message())[1].code == 250
        c.quit()
    got = sink.wait_for(1, mail_from=sender)
    assert len(got) == 1
    _, rest = px.pop_header_field(got[0].content)
    ours = px.parse_postern_received(px.pop_header_field(rest)[0])
    assert ours["proto"] == "ESMTPSA", ours
    assert ("AUTH PLAIN", "alice", True) in [(m, u, ok) for m, u, ok in accounts.attempts] \
        or ("PLAIN", "alice", True) in accounts.attempts, accounts.attempts
    assert d.grep(r'relay send="XCLIENT .*LOGIN=alice')
    px.wait_until(lambda: re.search(r"sasl_username=alice", pf.log()), px.DELIVERY_WAIT,
                  "Postfix logging the XCLIENT login")
    assert not d.grep(re.escape(ACCOUNTS["alice"]))          # never logged


def test_auth_login_mechanism(submission):
    d = submission[0]
    with tls_session(d) as c:
        r = c.cmd("AUTH LOGIN")
        assert r.code == 334, r
        assert c.cmd(base64.b64encode(b"bob").decode()).code == 334
        r = c.cmd(base64.b64encode(ACCOUNTS["bob"].encode()).decode())
        assert r.code == 235, r


def test_bad_credentials_then_throttled(submission):
    d = submission[0]
    with tls_session(d) as c:
        for _ in range(2):
            r = c.cmd("AUTH PLAIN " + plain("alice", "wrong"))
            assert r.code == 535 and r.lines[0].startswith("5.7.8"), r
        # failures_max = 2: now even the right password waits
        r = c.cmd("AUTH PLAIN " + plain("alice", ACCOUNTS["alice"]))
        assert r.code == 454 and r.lines[0].startswith("4.7.0"), r
    with tls_session(d) as c:                                   # per address, not session
        r = c.cmd("AUTH PLAIN " + plain("bob", ACCOUNTS["bob"]))
        assert r.code == 454, r
    assert d.grep(r"auth result=throttled client=127\.0\.0\.1")
    # another address is not throttled
    with pt.Client(d.port, source="127.0.0.3") as c:
        c.greeting()
        c.ehlo()
        c.starttls()
        c.ehlo()
        r = c.cmd("AUTH PLAIN " + plain("bob", ACCOUNTS["bob"]))
        assert r.code == 235, r


def test_auth_aborted_and_bad_mechanism(submission):
    d = submission[0]
    with tls_session(d) as c:
        assert c.cmd("AUTH PLAIN").code == 334
        r = c.cmd("*")
        assert r.code == 501, r
        r = c.cmd("AUTH CRAM-MD5")
        assert r.code == 504, r
