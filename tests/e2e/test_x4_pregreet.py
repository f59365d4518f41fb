"""x4. The pregreet check (issue 10, must-show 7): on a listener with
`pregreet = yes` a client the store does not remember gets "220-" at once and
the rest of the greeting after pregreet.delay (1 s here); one that talks
before the rest is refused (554 5.5.1) and remembered as pregreet=fail, which
a policy rule can act on at its next connection; a patient one passes and,
on its next connection within greet_ttl, is greeted at once (no 220- line,
no delay), also after a reload and on the Redis store; a Redis that is down
costs at most timeouts.store, then the client is greeted as without the
check. The client address is chosen through a PROXY v2 header (storetest)."""

import os
import signal
import socket
import time

import pxtest as px
import pxtransport as pt
import storetest as st

DELAY = 1.0


def start(make_posternd, backend, store=None, pregreet="yes", policy=None, timeouts=None):
    port = px.free_port()
    s = st.proxy_settings(port, store=store, timeouts=timeouts)
    s['listener "edge"']["pregreet"] = pregreet
    s["pregreet"] = {"delay": "%dms" % int(DELAY * 1000), "greet_ttl": "1h",
                     "fail_ttl": "1h"}
    if policy:
        s["policy"] = policy
    return make_posternd(backend, settings=s, port=port)


class Raw:
    """A raw client from src through PROXY v2: reply lines as they come."""

    def __init__(self, port, src):
        self.sock = socket.create_connection((px.HOST, port), timeout=px.IO_TIMEOUT)
        self.sock.sendall(pt.proxy_v2(src, "198.51.100.1", 40000, 25))
        self.t0 = time.monotonic()

    def line(self):
        return pt.read_reply_line(self.sock).decode("utf-8", "replace")

    def send(self, data):
        self.sock.sendall(data)

    def at_eof(self):
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, socket.timeout):
            return True

    def close(self):
        self.sock.close()


def deliver_after_greeting(port, src, sender):
    """A whole delivery through px.SmtpClient-style parsing after a raw greeting
    already read: returns the end-of-data reply code."""
    a = st.Attempt(port, src=src)
    try:
        m, rs = a.envelope(sender, ["user@example.test"])
        assert m.code == 250 and rs[0].code == 250, (m, rs)
        return a.greeting, a.data().code
    finally:
        a.close()


def test_early_talker_refused_and_remembered(sink, make_posternd):
    d = start(make_posternd, "smtp:" + sink.address,
              policy={"actions": ["pregreet=fail reject"]})
    c = Raw(d.port, "192.0.2.41")
    first = c.line()
    assert first.startswith("220-mx.test "), first
    c.send(b"EHLO bot.test\r\n")                 # before the rest of the greeting
    r = c.line()
    assert r.startswith("554 5.5.1 "), r
    assert time.monotonic() - c.t0 < DELAY, "refused at once, not after the delay"
    assert c.at_eof()
    c.close()
    assert d.wait_log(r"pregreet client=192\.0\.2\.41 test=fail ")
    assert d.wait_log(r"reject reason=early-talker client=192\.0\.2\.41")
    # its next connection: pregreet=fail, and the rule rejects it at once
    c = Raw(d.port, "192.0.2.41")
    r = c.line()
    assert r.startswith("554 5.7.1 "), r
    assert c.at_eof()
    c.close()
    assert d.wait_log(r"pregreet client=192\.0\.2\.41 remembered=fail action=reject")
    # another client is not affected
    c = Raw(d.port, "192.0.2.42")
    assert c.line().startswith("220-"), "another address is tested"
    c.close()


def test_fail_without_rule_is_tested_again(sink, make_posternd):
    d = start(make_posternd, "smtp:" + sink.address)
    c = Raw(d.port, "192.0.2.43")
    assert c.line().startswith("220-")
    c.send(b"HELO bot.test\r\n")
    assert c.line().startswith("554 5.5.1 ")
    c.close()
    assert d.wait_log(r"pregreet client=192\.0\.2\.43 test=fail ")
    c = Raw(d.port, "192.0.2.43")
    assert c.line().startswith("220-"), "no rule: tested again"
    c.close()
    assert d.wait_log(r"pregreet client=192\.0\.2\.43 remembered=fail action=test")


def patient_pass(d, src):
    """A client that waits: 220- at once, 220 after the delay; then mail."""
    c = Raw(d.port, src)
    first = c.line()
    assert first.startswith("220-mx.test ESMTP Postern"), first
    rest = c.line()
    waited = time.monotonic() - c.t0
    assert rest.startswith("220 mx.test ESMTP Postern"), rest
    assert waited >= DELAY - 0.1, waited
    c.send(b"QUIT\r\n")
    assert c.line().startswith("221 ")
    c.close()
    assert d.wait_log(r"pregreet client=%s test=pass " % src.replace(".", r"\."))


def greeted_at_once(d, src, sender):
    t0 = time.monotonic()
    greeting, eod = deliver_after_greeting(d.port, src, sender)
    assert greeting.code == 220 and len(greeting.lines) == 1, greeting
    assert time.monotonic() - t0 < DELAY, "no delay for a client that passed"
    assert eod == 250


def test_patient_client_passes_and_is_remembered(sink, make_posternd):
    d = start(make_posternd, "smtp:" + sink.address)
    patient_pass(d, "192.0.2.51")
    greeted_at_once(d, "192.0.2.51", "p1@client.test")
    assert len(sink.wait_for(1, mail_from="p1@client.test")) == 1
    assert d.wait_log(r"pregreet client=192\.0\.2\.51 remembered=pass action=greet")
    # a reload keeps what the store remembers
    gen = len(d.grep(r"reload status=ok generation="))
    os.kill(d.proc.pid, signal.SIGHUP)
    assert d.wait_log(r"reload status=ok generation=", n=gen + 1)
    greeted_at_once(d, "192.0.2.51", "p2@client.test")
    # a trusted client and a listener without the check: no 220- line
    c = st.Attempt(d.port, src="10.255.255.255")
    assert len(c.greeting.lines) == 1 and c.greeting.code == 220
    c.close()


def test_listener_without_check(sink, make_posternd):
    d = start(make_posternd, "smtp:" + sink.address, pregreet="no")
    t0 = time.monotonic()
    c = st.Attempt(d.port, src="192.0.2.61")
    assert c.greeting.code == 220 and len(c.greeting.lines) == 1
    assert time.monotonic() - t0 < DELAY
    c.close()
    assert not d.grep(r"pregreet client=")


def test_redis_store(sink, make_posternd, tmp_path_factory):
    redis = st.RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        d = start(make_posternd, "smtp:" + sink.address, store=redis.url,
                  timeouts={"store": "500ms"})
        patient_pass(d, "192.0.2.71")
        assert redis.cli("GET", "pregreet:192.0.2.71").strip() == "pass"
        assert 0 < int(redis.cli("PTTL", "pregreet:192.0.2.71")) <= 3600 * 1000
        greeted_at_once(d, "192.0.2.71", "r1@client.test")
        redis.kill()
        # a dead store: greeted as without the check, within timeouts.store
        t0 = time.monotonic()
        c = st.Attempt(d.port, src="192.0.2.72")
        assert c.greeting.code == 220 and len(c.greeting.lines) == 1, c.greeting
        assert time.monotonic() - t0 < 0.5 + DELAY
        c.close()
        assert d.wait_log(r"pregreet client=192\.0\.2\.72 error=store(-timeout)? action=greet")
    finally:
        redis.kill()


def test_store_that_never_answers(sink, make_posternd):
    """A "Redis" that accepts and never answers: the greeting waits at most
    timeouts.store (300 ms here), then goes on as without the check."""
    silent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    silent.bind((px.HOST, 0))
    silent.listen(16)
    try:
        d = start(make_posternd, "smtp:" + sink.address,
                  store="redis://%s:%d/0" % (px.HOST, silent.getsockname()[1]),
                  timeouts={"store": "300ms"})
        t0 = time.monotonic()
        c = st.Attempt(d.port, src="192.0.2.81")
        waited = time.monotonic() - t0
        assert c.greeting.code == 220 and len(c.greeting.lines) == 1, c.greeting
        assert 0.2 < waited < DELAY, waited
        c.close()
        assert d.wait_log(r"pregreet client=192\.0\.2\.81 error=store(-timeout)? action=greet")
    finally:
        silent.close()
