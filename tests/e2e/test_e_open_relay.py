"""e. No open relay (invariant 2): an untrusted client may send only to
relay_domains; a denied RCPT gets 554 5.7.1 and never reaches the backend."""

import pytest

import pxtest as px

UNTRUSTED = ["trusted_networks=192.0.2.0/24"]


def rcpt_session(port, rcpts, sender="relay@client.test", message=None):
    """MAIL, the RCPTs, and DATA if any was accepted; returns (rcpt replies, final)."""
    with px.SmtpClient(port) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd("MAIL FROM:<%s>" % sender).code == 250
        rr = [c.cmd("RCPT TO:<%s>" % r) for r in rcpts]
        final = None
        if any(r.code == 250 for r in rr):
            _, final = c.data(message or px.make_message())
        c.quit()
    return rr, final


def test_relay_denied_nothing_reaches_backend(make_fault_backend, make_posternd):
    be = make_fault_backend()
    d = make_posternd("smtp:" + be.address, settings={"relay_domains": ["example.test"]},
                      overrides=UNTRUSTED)
    rr, final = rcpt_session(d.port, ["user@elsewhere.test"])
    assert rr[0].code == 554 and rr[0].lines[0].startswith("5.7.1"), rr[0]
    assert final is None
    # the backend was not even contacted for it
    assert not [c for c in be.seen_commands if "elsewhere.test" in c], be.seen_commands
    assert be.accepted == []


def test_relay_denied_mixed_with_local_domain(sink, make_posternd):
    d = make_posternd("smtp:" + sink.address, settings={"relay_domains": ["example.test"]},
                      overrides=UNTRUSTED)
    rr, final = rcpt_session(d.port, ["a@elsewhere.test", "user@example.test",
                                      "b@example.test.elsewhere.test", "c@xexample.test"],
                             sender="mixed@client.test")
    assert [r.code for r in rr] == [554, 250, 554, 554], rr
    for r in (rr[0], rr[2], rr[3]):
        assert r.lines[0].startswith("5.7.1"), r
    assert final is not None and final.code == 250, final
    got = sink.wait_for(1, mail_from="mixed@client.test")
    assert len(got) == 1 and got[0].rcpts == ["user@example.test"]
    assert sink.count() == 1


@pytest.mark.parametrize("rcpt", [
    "user@EXAMPLE.TEST",
    "user@Example.Test",
])
def test_relay_domain_case_insensitive(sink, make_posternd, rcpt):
    d = make_posternd("smtp:" + sink.address, settings={"relay_domains": ["example.test"]},
                      overrides=UNTRUSTED)
    rr, final = rcpt_session(d.port, [rcpt], sender="case@client.test")
    assert rr[0].code == 250, rr[0]
    assert final.code == 250


@pytest.mark.parametrize("rcpt", [
    "<@example.test:user@elsewhere.test>",      # source route: the mailbox decides
    "user@elsewhere.test@example.test",        # not one mailbox
    "user@[192.0.2.1]",                        # address literal
])
def test_relay_tricks_refused(make_fault_backend, make_posternd, rcpt):
    be = make_fault_backend()
    d = make_posternd("smtp:" + be.address, settings={"relay_domains": ["example.test"]},
                      overrides=UNTRUSTED)
    with px.SmtpClient(d.port) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd("MAIL FROM:<trick@client.test>").code == 250
        arg = rcpt if rcpt.startswith("<") else "<%s>" % rcpt
        r = c.cmd("RCPT TO:%s" % arg)
        c.quit()
    assert r.code >= 500, r
    assert not [x for x in be.seen_commands if x.upper().startswith("RCPT")], be.seen_commands


def test_subdomain_match_with_leading_dot(sink, make_posternd):
    d = make_posternd("smtp:" + sink.address, settings={"relay_domains": [".example.test"]},
                      overrides=UNTRUSTED)
    rr, final = rcpt_session(d.port, ["a@sub.example.test", "b@deep.sub.example.test",
                                      "c@other.test", "d@sub.example.test.other.test"],
                             sender="sub@client.test")
    assert [r.code for r in rr] == [250, 250, 554, 554], rr
    assert final.code == 250
    got = sink.wait_for(1, mail_from="sub@client.test")
    assert sorted(got[0].rcpts) == ["a@sub.example.test", "b@deep.sub.example.test"]


def test_trusted_network_may_relay(sink, make_posternd):
    """With the default trusted_networks (127.0.0.0/8, ::1/128) the loopback
    client may relay anywhere."""
    d = make_posternd("smtp:" + sink.address, settings={"relay_domains": ["example.test"]})
    rr, final = rcpt_session(d.port, ["user@elsewhere.test"], sender="trusted@client.test")
    assert rr[0].code == 250, rr[0]
    assert final.code == 250
    assert sink.wait_for(1, mail_from="trusted@client.test")[0].rcpts == ["user@elsewhere.test"]
