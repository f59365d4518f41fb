"""t3. PROXY protocol v1 and v2 (issue 3, must-show 2).

The backend is a private Postfix that accepts XCLIENT from 127.0.0.0/8
(smtpd_authorized_xclient_hosts): the address it records for the message
(its Received header and its log) must be the one the PROXY header named,
whether the header came from HAProxy (v2) or from the test itself (v1). A
header from a source not in proxy_sources is refused.
"""

import os
import re
import socket

import pxtest as px
import pxtransport as pt


def proxy_listener(port, sources=("127.0.0.1/32",), version="any"):
    return {"listen": [],
            'listener "edge"': {"address": "%s:%d" % (px.HOST, port),
                                "proxy_protocol": version,
                                "proxy_sources": list(sources)}}


def postfix_saw(pf, sink, sender, client_ip):
    """Postfix's own Received header and its log name client_ip for sender."""
    got = sink.wait_for(1, mail_from=sender)
    assert len(got) == 1, "%s: %d copies" % (sender, len(got))
    rec, rest = px.pop_header_field(got[0].content)
    assert b"(Postfix)" in rec and ("[%s]" % client_ip).encode() in rec, rec
    ours, _ = px.pop_header_field(rest)
    assert px.parse_postern_received(ours)["ip"] == client_ip
    px.wait_until(lambda: re.search(r"client=\S*\[%s\]" % re.escape(client_ip), pf.log()),
                  px.DELIVERY_WAIT, "Postfix log naming %s" % client_ip)


def send_after_header(port, header, sender, source=None):
    with pt.Client(port, source=source) as c:
        c.send(header)
        assert c.greeting().code == 220
        assert c.ehlo("proxied.client.test").code == 250
        assert c.cmd("MAIL FROM:<%s>" % sender).code == 250
        assert c.cmd("RCPT TO:<user@example.test>").code == 250
        _, final = c.data(px.make_message())
        assert final.code == 250, final
        c.quit()


def test_v1_header_written_by_the_test(postfix_backend, make_posternd):
    pf, sink = postfix_backend
    port = px.free_port()
    d = make_posternd("smtp:127.0.0.1:%d" % pf.port, settings=proxy_listener(port), port=port)
    sender = "ppv1-%s@client.test" % os.path.basename(d.workdir)
    send_after_header(port, pt.proxy_v1("192.0.2.7", "198.51.100.1", 40123, 25), sender)
    postfix_saw(pf, sink, sender, "192.0.2.7")
    assert d.wait_log(r"proxy version=1 client=192\.0\.2\.7 port=40123 trusted=no")


def test_v2_header_written_by_the_test(postfix_backend, make_posternd):
    pf, sink = postfix_backend
    port = px.free_port()
    d = make_posternd("smtp:127.0.0.1:%d" % pf.port, settings=proxy_listener(port), port=port)
    sender = "ppv2-%s@client.test" % os.path.basename(d.workdir)
    send_after_header(port, pt.proxy_v2("203.0.113.9", "198.51.100.1", 51000, 25), sender)
    postfix_saw(pf, sink, sender, "203.0.113.9")


def test_v2_through_haproxy(postfix_backend, make_posternd, workdir):
    """A real load balancer: HAProxy sends PROXY v2 for a client connecting
    from 127.0.0.5; Postfix records 127.0.0.5, not HAProxy's 127.0.0.1."""
    pf, sink = postfix_backend
    port = px.free_port()
    d = make_posternd("smtp:127.0.0.1:%d" % pf.port, settings=proxy_listener(port, version="v2"),
                      port=port)
    ha = pt.Haproxy(workdir / "haproxy", port, version=2).start()
    try:
        sender = "haproxy-%s@client.test" % os.path.basename(d.workdir)
        send_after_header(ha.port, b"", sender, source="127.0.0.5")
        postfix_saw(pf, sink, sender, "127.0.0.5")
        assert d.wait_log(r"proxy version=2 client=127\.0\.0\.5 ")
    finally:
        ha.stop()


def test_header_from_untrusted_source_refused(sink, make_posternd):
    port = px.free_port()
    d = make_posternd("smtp:" + sink.address, settings=proxy_listener(port, ("127.0.0.9/32",)),
                      port=port)
    with pt.Client(port) as c:
        c.send(pt.proxy_v1("192.0.2.7", "198.51.100.1", 40123, 25))
        r = c.reply()
        assert r.code == 421 and r.lines[0].startswith("4.7.0"), r
        assert c.at_eof()
    assert d.wait_log(r"reject reason=proxy-protocol client=127\.0\.0\.1 ")


def test_bad_header_refused(sink, make_posternd):
    port = px.free_port()
    d = make_posternd("smtp:" + sink.address, settings=proxy_listener(port), port=port)
    for bad in (b"EHLO client.test\r\n", b"PROXY TCP4 999.1.1.1 127.0.0.1 1 2\r\n",
                b"PROXY TCP4 192.0.2.1 127.0.0.1 01 2\r\n", b"PROXY " + b"x" * 200):
        with pt.Client(port) as c:
            c.send(bad)
            r = c.reply()
            assert r.code == 421 and r.lines[0].startswith("4.7.0"), (bad, r)
    # a proper header still works after all that
    with pt.Client(port) as c:
        c.send(pt.proxy_v2("192.0.2.8", "198.51.100.1", 1234, 25))
        assert c.greeting().code == 220
    assert d.alive()


def test_header_timeout(sink, make_posternd):
    port = px.free_port()
    settings = proxy_listener(port)
    settings["timeouts"] = {"proxy_header": "1s"}
    make_posternd("smtp:" + sink.address, settings=settings, port=port)
    with pt.Client(port) as c:
        c.send(b"PROXY TCP4 192.0.2.1")       # and then nothing
        r = c.reply()
        assert r.code == 421, r


def test_header_trickled_is_late_all_the_same(sink, make_posternd):
    """The PROXY header wait is a deadline: a byte a second does not extend it."""
    import time
    port = px.free_port()
    settings = proxy_listener(port)
    settings["timeouts"] = {"proxy_header": "2s"}
    d = make_posternd("smtp:" + sink.address, settings=settings, port=port)
    header = b"PROXY TCP4 192.0.2.1 127.0.0.1 1234 25"
    t0 = time.monotonic()
    with pt.Client(port) as c:
        c.sock.settimeout(1.0)
        reply = b""
        for i in range(len(header)):            # bounded: at most ~38 s, ends far sooner
            try:
                c.sock.sendall(header[i:i + 1])
            except OSError:
                break
            try:
                got = c.sock.recv(512)
            except socket.timeout:
                continue
            except OSError:
                break
            if not got:
                break
            reply += got
        elapsed = time.monotonic() - t0
    assert reply.startswith(b"421"), reply
    assert elapsed < 8, "closed after %.1f s with proxy_header=2s" % elapsed
    assert d.alive()
