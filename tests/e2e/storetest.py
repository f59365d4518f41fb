"""Helpers for the store tests (greylist, ratelimit, Redis, LMDB): a
redis-server of the test's own on a free port, posternd configured with the
greylist and ratelimit plugins behind a PROXY v2 listener (so that a test can
be any client address), and SMTP attempts from a chosen address."""

import os
import subprocess

import pxtest as px
import pxtransport as pt


class RedisServer:
    """redis-server on 127.0.0.1:PORT, no persistence; stop() and start()
    again keep the port (a restart), kill() is SIGKILL."""

    def __init__(self, workdir, port=None):
        self.workdir = str(workdir)
        self.port = port or px.free_port()
        self.proc = None
        self.logfile = os.path.join(self.workdir, "redis.log")

    @property
    def url(self):
        return "redis://127.0.0.1:%d/0" % self.port

    def start(self):
        os.makedirs(self.workdir, exist_ok=True)
        self._log = open(self.logfile, "ab")
        self.proc = subprocess.Popen(
            [px.require("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", self.workdir,
             "--protected-mode", "no"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True)
        px.wait_until(lambda: px.port_accepts(self.port), px.START_WAIT,
                      "redis-server on port %d" % self.port, self.proc)
        return self

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            px.stop_pid(self.proc, sig=9)
        self._close_log()

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            px.stop_pid(self.proc)
        self._close_log()

    def _close_log(self):
        if getattr(self, "_log", None):
            self._log.close()
            self._log = None

    def cli(self, *args):
        r = subprocess.run([px.require("redis-cli"), "-p", str(self.port)] + list(args),
                           capture_output=True, text=True, timeout=30)
        return r.stdout


def proxy_settings(port, store=None, timeouts=None, trusted=("10.255.255.255/32",)):
    """posternd settings: one PROXY v2 listener on port (from 127.0.0.1, as
    the test or HAProxy sends), the store, loopback not trusted (so that
    127.0.0.1 itself would be greylisted too)."""
    s = {"listen": [],
         'listener "edge"': {"address": "%s:%d" % (px.HOST, port), "proxy_protocol": "v2",
                             "proxy_sources": ["127.0.0.1/32"]},
         "trusted_networks": list(trusted)}
    if store:
        s["store"] = store
    if timeouts:
        s["timeouts"] = timeouts
    return s


def start_node(make_posternd, backend, sections, store=None, timeouts=None, port=None):
    """posternd with the given plugin sections (conf.d/60-store.conf)."""
    port = port or px.free_port()
    d = make_posternd(backend, settings=proxy_settings(port, store, timeouts), port=port,
                      start=False)
    px.write_conf_d(d, "60-store.conf", "".join(sections))
    return d.start()


def greylist(plugin, **opts):
    o = {"path": plugin("greylist"), "allow_networks": "10.255.255.255/32"}
    o.update(opts)
    return px.plugin_section("greylist", **o)


def ratelimit(plugin, **opts):
    o = {"path": plugin("ratelimit"), "allow_networks": "10.255.255.255/32"}
    o.update(opts)
    return px.plugin_section("ratelimit", **o)


class Attempt:
    """One SMTP session from client address src through a PROXY v2 header."""

    def __init__(self, port, src="192.0.2.10"):
        self.c = pt.Client(port)
        self.c.send(pt.proxy_v2(src, "198.51.100.1", 40000, 25))
        self.greeting = self.c.greeting()

    def envelope(self, sender, rcpts):
        assert self.c.ehlo("client.test").code == 250
        m = self.c.cmd("MAIL FROM:<%s>" % sender)
        if m.code != 250:
            return m, []
        return m, [self.c.cmd("RCPT TO:<%s>" % r) for r in rcpts]

    def data(self, subject="store test"):
        return self.c.data(px.make_message(subject=subject))[1]

    def close(self):
        self.c.quit()


def attempt(port, sender, rcpt="user@example.test", src="192.0.2.10", send_data=True):
    """A whole delivery attempt; returns (rcpt reply, end-of-data reply or None)."""
    a = Attempt(port, src)
    try:
        assert a.greeting.code == 220, a.greeting
        mail, rcpts = a.envelope(sender, [rcpt])
        assert mail.code == 250, mail
        r = rcpts[0]
        eod = a.data() if (send_data and r.code == 250) else None
        return r, eod
    finally:
        a.close()


class Haproxy2:
    """HAProxy in TCP mode, round robin over several servers, PROXY v2 to each."""

    def __init__(self, workdir, server_ports):
        self.workdir = str(workdir)
        self.port = px.free_port()
        self.server_ports = list(server_ports)
        self.conf = os.path.join(self.workdir, "haproxy.cfg")
        self.logfile = os.path.join(self.workdir, "haproxy.log")
        self.proc = None

    def start(self):
        os.makedirs(self.workdir, exist_ok=True)
        servers = "".join("    server p%d %s:%d send-proxy-v2\n" % (i, px.HOST, p)
                          for i, p in enumerate(self.server_ports))
        with open(self.conf, "w") as f:
            f.write("global\n    maxconn 100\n"
                    "defaults\n    mode tcp\n    timeout connect 10s\n"
                    "    timeout client 60s\n    timeout server 60s\n"
                    "frontend smtp\n    bind %s:%d\n    default_backend postern\n"
                    "backend postern\n    balance roundrobin\n%s" % (px.HOST, self.port, servers))
        self._log = open(self.logfile, "ab")
        self.proc = subprocess.Popen([px.require("haproxy"), "-db", "-f", self.conf],
                                     stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        px.wait_until(lambda: px.port_accepts(self.port), px.START_WAIT,
                      "haproxy on port %d" % self.port, self.proc)
        return self

    def stop(self):
        px.stop_pid(self.proc)
        if getattr(self, "_log", None):
            self._log.close()


def attempt_via(port, sender, rcpt="user@example.test", source="127.0.0.5"):
    """A delivery attempt through a load balancer: the client connects from
    a loopback address of its own, HAProxy writes the PROXY header."""
    c = pt.Client(port, source=source)
    try:
        g = c.greeting()
        assert g.code == 220, g
        assert c.ehlo("client.test").code == 250
        assert c.cmd("MAIL FROM:<%s>" % sender).code == 250
        r = c.cmd("RCPT TO:<%s>" % rcpt)
        eod = c.data(px.make_message())[1] if r.code == 250 else None
        return r, eod
    finally:
        c.quit()
