"""t4. The backend learns the real client: XCLIENT, else XFORWARD, else
nothing, logged (issue 3, must-show 3); XCLIENT accepted from configured
front ends only."""

import os
import re

import pxtest as px
import pxtransport as pt

FRONT_END = {"xclient_sources": ["127.0.0.1/32"]}


def xclient_session(port, sender, attrs="ADDR=192.0.2.44 NAME=mail.example.net "
                    "HELO=orig.example.net"):
    """A trusted front end speaks for a client with XCLIENT, then sends."""
    with px.SmtpClient(port) as c:
        c.greeting()
        kw = px.ehlo_keywords(c.ehlo("frontend.test"))
        assert "XCLIENT" in kw, kw
        r = c.cmd("XCLIENT " + attrs)
        assert r.code == 220, r
        assert c.ehlo("frontend.test").code == 250
        assert c.cmd("MAIL FROM:<%s>" % sender).code == 250
        assert c.cmd("RCPT TO:<user@example.test>").code == 250
        _, final = c.data(px.make_message())
        assert final.code == 250, final
        c.quit()


def test_postfix_receives_xclient(postfix_backend, make_posternd):
    pf, sink = postfix_backend
    d = make_posternd("smtp:127.0.0.1:%d" % pf.port, settings=FRONT_END)
    sender = "xc-%s@client.test" % os.path.basename(d.workdir)
    xclient_session(d.port, sender)
    got = sink.wait_for(1, mail_from=sender)
    assert len(got) == 1
    rec, rest = px.pop_header_field(got[0].content)
    # Postfix's own Received names what XCLIENT said: HELO, NAME and ADDR
    assert rec.startswith(b"Received: from orig.example.net (mail.example.net [192.0.2.44])"), rec
    ours = px.parse_postern_received(px.pop_header_field(rest)[0])
    assert (ours["helo"], ours["name"], ours["ip"]) == ("orig.example.net", "mail.example.net",
                                                       "192.0.2.44")
    px.wait_until(lambda: "client=mail.example.net[192.0.2.44]" in pf.log(), px.DELIVERY_WAIT,
                  "Postfix log line with the XCLIENT client")
    sent = d.grep(r'relay send="XCLIENT ')
    assert sent and "ADDR=192.0.2.44" in sent[0] and "NAME=mail.example.net" in sent[0] \
        and "HELO=orig.example.net" in sent[0], sent


def test_xclient_refused_from_others(sink, make_posternd):
    d = make_posternd("smtp:" + sink.address)
    with px.SmtpClient(d.port) as c:
        c.greeting()
        assert "XCLIENT" not in px.ehlo_keywords(c.ehlo())
        r = c.cmd("XCLIENT ADDR=192.0.2.1")
        assert r.code == 550 and r.lines[0].startswith("5.7.0"), r


def test_xclient_bad_attribute(sink, make_posternd):
    d = make_posternd("smtp:" + sink.address, settings=FRONT_END)
    with px.SmtpClient(d.port) as c:
        c.greeting()
        c.ehlo()
        for bad in ("ADDR=300.1.1.1", "PORT=70000", "FOO=bar", "NAME=a+0Ab"):
            r = c.cmd("XCLIENT " + bad)
            assert r.code == 501, (bad, r)


def test_xclient_address_drives_relay_policy(sink, make_posternd):
    """After XCLIENT ADDR=192.0.2.44 the client is no longer 'trusted'
    (127.0.0.0/8): a recipient outside relay_domains is refused."""
    d = make_posternd("smtp:" + sink.address, settings=FRONT_END)
    with px.SmtpClient(d.port) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd("XCLIENT ADDR=192.0.2.44").code == 220
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@client.test>").code == 250
        r = c.cmd("RCPT TO:<someone@elsewhere.test>")
        assert r.code == 554 and r.lines[0].startswith("5.7.1"), r


def test_smtp_sink_without_xclient_gets_xforward(make_sink, make_posternd):
    sink = make_sink(opts=["-C", "-v"])               # XCLIENT off; log the conversation
    d = make_posternd("smtp:" + sink.address, settings=FRONT_END)
    xclient_session(d.port, "xf@client.test")
    assert len(sink.wait_for(1, mail_from="xf@client.test")) == 1
    assert d.grep(r"relay forward=xforward")

    def sink_heard():
        with open(sink.logfile, errors="replace") as f:
            return re.search(r"XFORWARD .*ADDR=192\.0\.2\.44", f.read())
    px.wait_until(sink_heard, px.DELIVERY_WAIT, "smtp-sink log with the XFORWARD command")


def test_nothing_forwarded_when_configured_none(make_sink, make_posternd):
    sink = make_sink(opts=["-C"])
    settings = dict(FRONT_END, backend_forward="none")
    d = make_posternd("smtp:" + sink.address, settings=settings)
    xclient_session(d.port, "none@client.test")
    got = sink.wait_for(1, mail_from="none@client.test")
    assert len(got) == 1 and got[0].client_addr == "127.0.0.1", got[0].raw[:300]
    assert d.grep(r"relay forward=none client=192\.0\.2\.44 reason=")
    assert not d.grep(r'relay send="X(CLIENT|FORWARD)')


def test_backend_with_neither_is_logged(make_sink, make_posternd):
    sink = make_sink(opts=["-C", "-F"])               # no XCLIENT, no XFORWARD
    d = make_posternd("smtp:" + sink.address)
    res = px.send_message(d.port, px.make_message(), mail_from="neither@client.test")
    assert res["final"].code == 250
    assert d.grep(r"relay forward=none client=127\.0\.0\.1 reason=")
    assert re.search(r"X-Client-Addr: 127\.0\.0\.1",
                     sink.wait_for(1, mail_from="neither@client.test")[0].raw.decode())
