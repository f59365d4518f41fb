"""u1. The resolver host services (ABI 1.2, issue 9 part 1), end to end.

posternd forwards to tests/e2e/dnsserver.py (dns_forward = 127.0.0.1@PORT);
tests/plugins/dnsprobe.so looks the MAIL FROM domain up at MAIL (dns_query,
or dns_query_async from a hook that answers PX_PENDING), logs the answer and
adds "X-Dnsprobe: status=S count=N data=..." to the message. It shows:
  - an answer comes from the test server; NXDOMAIN, NODATA and SERVFAIL map
    to their statuses; a name under .test reaches the server;
  - a domain whose server never answers costs its lookups timeouts.dns, and
    20 concurrent sessions of other mail keep flowing (each lookup answered
    at once) while such lookups hang;
  - the cache: a second lookup of a name (positive or NXDOMAIN) does not
    reach the server;
  - the host warms the cache: HELO and MAIL FROM TXT at MAIL, _dmarc.<From>
    and <s>._domainkey.<d> once the headers are in;
  - an asynchronous lookup from a PENDING hook ends its call, a hanging one
    at the timeout;
  - a reload applies a new timeouts.dns and says a new dns_forward needs a
    restart."""

import os
import signal
import threading
import time

import pytest

import pxtest as px
from dnsserver import DNSServer

DNS_TIMEOUT = 2.0               # timeouts.dns
BUDGET = "8s"                   # the plugin's own budget: well above it
OTHERS = 20

RECORDS = {
    "ok.example.net": [("TXT", "v=spf1 ip4:192.0.2.0/24 -all"), ("A", "192.0.2.10")],
    "nodata.example.net": [("A", "192.0.2.11")],
    "zone.test": [("TXT", "in the test zone")],
    "cache.example.net": [("TXT", "cache me")],
    "async.example.net": [("TXT", "async answer")],
    "_dmarc.from.example.net": [("TXT", "v=DMARC1; p=none")],
    "sel1._domainkey.dkim.example.net": [("TXT", "v=DKIM1; k=rsa; p=AAAA")],
}
for _i in range(OTHERS):
    RECORDS["flow%02d.example.net" % _i] = [("TXT", "flow %d" % _i)]


@pytest.fixture
def dns():
    with DNSServer(RECORDS, servfail=["servfail.example.net"],
                   hang=["hang.example.net", "*.hang.example.net"]) as d:
        yield d


def probe_daemon(make_posternd, plugin, sink, dns, mode="sync", **extra):
    settings = {"dns_forward": [dns.addr], "timeouts": {"dns": "%dms" % (DNS_TIMEOUT * 1000)},
                "workers": 2}
    settings.update(extra)
    return px.posternd_with_conf_d(
        make_posternd, "smtp:" + sink.address,
        {"50-dnsprobe.conf": px.plugin_section("dnsprobe", path=plugin("dnsprobe"),
                                               timeout=BUDGET, mode=mode)},
        settings=settings)


def lookup_line(d, name, n=1):
    lines = d.wait_log(r"plugin=dnsprobe lookup name=%s " % name.replace(".", r"\."), n=n)
    assert len(lines) >= n, d.log()[-3000:]
    return px.parse_kv(lines[-1].split("plugin=dnsprobe ", 1)[1])


def send(d, sender, **kw):
    return px.send_message(d.port, px.make_message(subject="dns " + sender),
                           mail_from=sender, **kw)


def delivered_probe(sink, sender):
    ms = sink.wait_for(1, mail_from=sender)
    assert ms, "nothing delivered from %s" % sender
    return ms[-1].header("X-Dnsprobe")


def test_statuses(make_posternd, plugin, sink, dns):
    d = probe_daemon(make_posternd, plugin, sink, dns)
    cases = [
        ("a@ok.example.net", "ok", "v=spf1 ip4:192.0.2.0/24 -all"),
        ("a@nx.example.net", "nxdomain", ""),
        ("a@nodata.example.net", "nodata", ""),
        ("a@servfail.example.net", "tempfail", ""),
        ("a@zone.test", "ok", "in the test zone"),      # test. is the forwarder's
    ]
    for sender, status, data in cases:
        r = send(d, sender)
        assert r["final"].code == 250, (sender, r)
        kv = lookup_line(d, sender.split("@")[1])
        assert kv["status"] == status, (sender, kv)
        assert kv["data"] == data, (sender, kv)
        if status == "nxdomain":
            assert kv["rcode"] == "3"
        if status == "tempfail":
            assert kv["rcode"] == "2"
            assert int(kv["ms"]) < DNS_TIMEOUT * 1000 / 2, kv   # an answer, not a timeout
        hdr = delivered_probe(sink, sender)
        assert hdr and hdr[0].startswith("status=%s " % status), hdr
        assert dns.queries(sender.split("@")[1], "TXT") >= 1
    assert not d.sanitizer_reports()


def hung_session(d, i, out):
    t0 = time.monotonic()
    r = send(d, "h%d@x%d.hang.example.net" % (i, i))
    out.append((r["final"].code, r["mail"].code, time.monotonic() - t0))


def flow_session(d, i, out):
    with px.SmtpClient(d.port) as c:
        c.greeting()
        c.ehlo()
        t0 = time.monotonic()
        r = c.cmd("MAIL FROM:<f%d@flow%02d.example.net>" % (i, i))
        took = time.monotonic() - t0
        rr = c.cmd("RCPT TO:<user@example.test>")
        _, eod = c.data(px.make_message(subject="flow %d" % i))
        c.quit()
    out.append((i, r.code, rr.code, eod.code if eod else None, took))


def test_hanging_domain_costs_its_timeout_only(make_posternd, plugin, sink, dns):
    d = probe_daemon(make_posternd, plugin, sink, dns)
    # one alone: exactly the timeout
    t0 = time.monotonic()
    r = send(d, "a@hang.example.net")
    took = time.monotonic() - t0
    assert r["final"].code == 250, r          # dnsprobe answers next on tempfail
    kv = lookup_line(d, "hang.example.net")
    assert kv["status"] == "tempfail", kv
    assert DNS_TIMEOUT * 1000 * 0.95 <= int(kv["ms"]) < DNS_TIMEOUT * 1000 + 500, kv
    assert took < DNS_TIMEOUT + 1.5, took
    assert dns.queries("hang.example.net", "TXT") >= 1

    # hung lookups in flight (6 sessions, two waves) while 20 sessions of
    # other mail go through, each lookup answered at once
    hung, flow = [], []
    hthreads = [threading.Thread(target=lambda i=i: [hung_session(d, i, hung),
                                                       hung_session(d, i + 10, hung)])
                for i in range(6)]
    for t in hthreads:
        t.start()
    time.sleep(0.3)
    t_flow = time.monotonic()
    fthreads = [threading.Thread(target=flow_session, args=(d, i, flow)) for i in range(OTHERS)]
    for t in fthreads:
        t.start()
    for t in fthreads:
        t.join(px.IO_TIMEOUT)
    flow_took = time.monotonic() - t_flow
    assert len(flow) == OTHERS, flow
    for i, mail, rcpt, eod, took in flow:
        assert (mail, rcpt, eod) == (250, 250, 250), (i, mail, rcpt, eod)
        assert took < DNS_TIMEOUT / 2, "MAIL of flow%02d took %.2fs" % (i, took)
    for t in hthreads:
        t.join(px.IO_TIMEOUT)
    # the flow finished while the hung lookups were still in flight
    assert flow_took < 2 * DNS_TIMEOUT - 0.3, flow_took
    assert len(hung) == 12, hung
    for final, mail, took in hung:
        assert mail == 250 and final == 250, hung
        assert DNS_TIMEOUT * 0.95 <= took < DNS_TIMEOUT + 2.0, hung
    for i in range(OTHERS):
        kv = lookup_line(d, "flow%02d.example.net" % i)
        assert kv["status"] == "ok" and kv["data"] == "flow %d" % i, kv
    assert len(d.grep(r"plugin=dnsprobe lookup name=x\d+\.hang\.example\.net .*"
                      r"status=tempfail")) == 12
    assert not d.grep(r"error=timeout"), "a plugin budget ran out"


def test_cache(make_posternd, plugin, sink, dns):
    d = probe_daemon(make_posternd, plugin, sink, dns)
    for k in range(3):
        assert send(d, "c%d@cache.example.net" % k)["final"].code == 250
        assert send(d, "n%d@nxcache.example.net" % k)["final"].code == 250
    kv = lookup_line(d, "cache.example.net", n=3)
    assert kv["status"] == "ok"
    assert lookup_line(d, "nxcache.example.net", n=3)["status"] == "nxdomain"
    assert dns.queries("cache.example.net", "TXT") == 1, dns.log
    assert dns.queries("nxcache.example.net", "TXT") == 1, dns.log


def test_warming(make_posternd, plugin, sink, dns):
    d = probe_daemon(make_posternd, plugin, sink, dns)
    msg = (b"From: Someone <someone@From.Example.NET>\r\n"
           b"To: Rcpt <user@example.test>\r\n"
           b"Subject: warm\r\n"
           b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;\r\n"
           b"\td=dkim.example.net; s=sel1; h=From:Subject; bh=AAAA; b=BBBB\r\n"
           b"\r\nbody\r\n")
    r = px.send_message(d.port, msg, mail_from="w@ok.example.net", helo="helo.example.net")
    assert r["final"].code == 250, r
    px.wait_until(lambda: dns.queries("helo.example.net", "TXT") >= 1, 5, "HELO warm")
    px.wait_until(lambda: dns.queries("_dmarc.from.example.net", "TXT") >= 1, 5, "DMARC warm")
    px.wait_until(lambda: dns.queries("sel1._domainkey.dkim.example.net", "TXT") >= 1, 5,
                  "DKIM key warm")
    assert dns.queries("ok.example.net", "TXT") == 1     # warm + plugin: one query


def test_async_from_pending_hook(make_posternd, plugin, sink, dns):
    d = probe_daemon(make_posternd, plugin, sink, dns, mode="async")
    r = send(d, "a@async.example.net")
    assert r["final"].code == 250, r
    kv = lookup_line(d, "async.example.net")
    assert (kv["mode"], kv["status"], kv["data"]) == ("async", "ok", "async answer"), kv
    hdr = delivered_probe(sink, "a@async.example.net")
    assert hdr and hdr[0].startswith("status=ok "), hdr
    # a hanging one ends the pending call at the DNS timeout
    t0 = time.monotonic()
    r = send(d, "b@y.hang.example.net")
    took = time.monotonic() - t0
    assert r["mail"].code == 250 and r["final"].code == 250, r
    kv = lookup_line(d, "y.hang.example.net")
    assert kv["status"] == "tempfail", kv
    assert DNS_TIMEOUT * 0.95 <= took < DNS_TIMEOUT + 1.5, took
    assert not d.grep(r"error=timeout"), "the plugin budget ran out"


def test_reload(make_posternd, plugin, sink, dns):
    d = probe_daemon(make_posternd, plugin, sink, dns)
    assert d.wait_log(r"resolver start upstream=127\.0\.0\.1@%d timeout=2000ms" % dns.port)
    d.settings["timeouts"] = {"dns": "500ms"}
    d.settings["dns_forward"] = ["127.0.0.1@1"]
    d.write_config()
    os.kill(d.proc.pid, signal.SIGHUP)
    assert d.wait_log(r"reload status=ok")
    assert d.wait_log(r"resolver reload timeout=500ms")
    assert d.wait_log(r"resolver reload dns_forward=changed upstream=127\.0\.0\.1@1 "
                      r"kept=127\.0\.0\.1@%d restart=needed" % dns.port)
    # the old upstream still answers; the new timeout holds
    assert send(d, "a@ok.example.net")["final"].code == 250
    assert lookup_line(d, "ok.example.net")["status"] == "ok"
    t0 = time.monotonic()
    send(d, "a@z.hang.example.net")
    assert time.monotonic() - t0 < 1.5
    kv = lookup_line(d, "z.hang.example.net")
    assert kv["status"] == "tempfail" and 450 <= int(kv["ms"]) < 1000, kv


def test_bad_settings_are_config_errors(posternd_bin, tmp_path):
    for text, words in [
        ('dns_forward = {"127.0.0.1@5353", "not-an-ip"}\n', ("dns_forward", "not-an-ip",
                                                             "not an address")),
        ('dns_forward = "127.0.0.1@0"\n', ("dns_forward", "not an address")),
        ('timeouts {\n dns = 0\n}\n', ("dns", "too small")),
    ]:
        conf = tmp_path / "postern.conf"
        conf.write_text(text)
        r = px.run_check(posternd_bin, str(conf))
        assert r.returncode == 1, (text, r)
        for w in words:
            assert w in r.stderr, (text, r.stderr)
        assert "postern.conf:" in r.stderr, r.stderr
    conf.write_text('dns_forward = {"127.0.0.1@5353", "::1", "192.0.2.1"}\n'
                    'timeouts {\n dns = 250ms\n}\n')
    r = px.run_check(posternd_bin, str(conf))
    assert r.returncode == 0, r
