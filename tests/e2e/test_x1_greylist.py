"""x1. Greylisting end to end on the embedded store (issue 10, must-show 1
and 4): first attempt 451 4.7.1, an early retry 451, a retry after the delay
(2 s here, set in the configuration) 250 and delivered; with SPF passed, a
retry from another address of the same sender passes; exemptions; the state
survives a restart of posternd (LMDB, the default path under spool_dir);
`postern greylist list | allow | purge` reads and writes the same store."""

import os
import subprocess
import time

import pxtest as px
import storetest as st

DELAY = 2.0


def wait_past(t0, seconds):
    """Sleep until `seconds` after t0 (bounded: the delay of the test)."""
    left = t0 + seconds - time.monotonic()
    if left > 0:
        time.sleep(left)


def test_first_early_late(sink, make_posternd, plugin):
    d = st.start_node(make_posternd, "smtp:" + sink.address,
                      [st.greylist(plugin, delay="2s")])
    sender = "grey-%s@client.test" % os.path.basename(d.workdir)
    t0 = time.monotonic()
    r, _ = st.attempt(d.port, sender)
    assert r.code == 451 and r.lines[0].startswith("4.7.1 Greylisted"), r
    assert "retry in 2s" in r.lines[0], r
    r, _ = st.attempt(d.port, sender)                     # early: deferred again
    assert r.code == 451 and r.lines[0].startswith("4.7.1"), r
    wait_past(t0, DELAY + 0.2)
    r, eod = st.attempt(d.port, sender)
    assert r.code == 250, r
    assert eod.code == 250, eod
    assert len(sink.wait_for(1, mail_from=sender)) == 1
    r, eod = st.attempt(d.port, sender)                   # known now: no delay
    assert r.code == 250 and eod.code == 250
    assert d.wait_log(r"plugin=greylist greylisted=passed ")
    # another recipient is another triplet
    r, _ = st.attempt(d.port, sender, rcpt="other@example.test")
    assert r.code == 451, r
    # the /24 is the client: another address of it is the same triplet
    r, _ = st.attempt(d.port, sender, src="192.0.2.99", send_data=False)
    assert r.code == 250, r
    r, _ = st.attempt(d.port, sender, src="198.51.100.7", send_data=False)
    assert r.code == 451, r


def test_spf_pass_counts_the_domain(sink, make_posternd, plugin):
    """spf=pass recorded before RCPT (the spfpass test plugin records it at
    MAIL): the sender's domain replaces the network, so the retry from a far
    other address passes."""
    d = st.start_node(make_posternd, "smtp:" + sink.address,
                      [px.plugin_section("spfpass", path=plugin("spfpass")),
                       st.greylist(plugin, delay="2s")])
    sender = "pool-%s@bigsender.test" % os.path.basename(d.workdir)
    t0 = time.monotonic()
    r, _ = st.attempt(d.port, sender, src="203.0.113.5")
    assert r.code == 451, r
    wait_past(t0, DELAY + 0.2)
    r, eod = st.attempt(d.port, sender, src="198.51.100.200")
    assert r.code == 250 and eod.code == 250, (r, eod)
    assert d.wait_log(r'greylisted=passed key="t:d:bigsender.test/')


def test_spf_plugin_pass_counts_the_domain(sink, make_posternd, plugin):
    """The same with the real SPF plugin ahead of greylist: the sender's
    domain publishes both client networks (served by the test DNS server),
    SPF passes for each, and the retry from the other network passes."""
    from dnsserver import DNSServer
    records = {"bigsender.example.net":
               [("TXT", "v=spf1 ip4:203.0.113.0/24 ip4:198.51.100.0/24 -all")]}
    with DNSServer(records) as dns:
        port = px.free_port()
        settings = dict(st.proxy_settings(port), dns_forward=[dns.addr])
        d = make_posternd("smtp:" + sink.address, settings=settings, port=port, start=False)
        px.write_conf_d(d, "60-store.conf", px.plugin_section("spf", path=plugin("spf")) +
                        st.greylist(plugin, delay="2s"))
        d.start()
        sender = "pool-%s@bigsender.example.net" % os.path.basename(d.workdir)
        t0 = time.monotonic()
        r, _ = st.attempt(d.port, sender, src="203.0.113.5")
        assert r.code == 451, r
        wait_past(t0, DELAY + 0.2)
        r, eod = st.attempt(d.port, sender, src="198.51.100.200")
        assert r.code == 250 and eod.code == 250, (r, eod)
        assert d.wait_log(r'greylisted=passed key="t:d:bigsender\.example\.net/')
        assert d.grep(r"plugin name=spf stage=mail verdict=next")


def test_exemptions(sink, make_posternd, plugin):
    d = st.start_node(make_posternd, "smtp:" + sink.address,
                      [st.greylist(plugin, delay="1h", retry_window="2h",
                                   allow_networks="192.0.2.128/25",
                                   allow_senders="partner.test",
                                   allow_recipients="postmaster@")])
    assert st.attempt(d.port, "a@client.test", src="192.0.2.200")[0].code == 250
    assert st.attempt(d.port, "a@mx.partner.test")[0].code == 250
    assert st.attempt(d.port, "a@client.test", rcpt="postmaster@example.test")[0].code == 250
    assert st.attempt(d.port, "a@client.test")[0].code == 451
    assert d.grep(r"greylist.*")


def test_auto_allow(sink, make_posternd, plugin):
    """A network that passed auto_allow times is not greylisted any more."""
    d = st.start_node(make_posternd, "smtp:" + sink.address,
                      [st.greylist(plugin, delay="1s", auto_allow=2)])
    t0 = time.monotonic()
    for i in range(2):
        assert st.attempt(d.port, "s%d@client.test" % i, send_data=False)[0].code == 451
    wait_past(t0, 1.2)
    for i in range(2):
        assert st.attempt(d.port, "s%d@client.test" % i, send_data=False)[0].code == 250
    r, _ = st.attempt(d.port, "new@client.test", send_data=False)
    assert r.code == 250, r


def postern(postern_bin, d, *args):
    return subprocess.run([postern_bin, "-c", d.conf, "greylist"] + list(args),
                          capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


def test_lmdb_survives_restart_and_admin(sink, make_posternd, plugin, postern_bin):
    """The default store (lmdb:SPOOL_DIR/store): a triplet that passed before
    a restart passes after it at once; `postern greylist` lists it, allow
    lets a new network through, purge forgets."""
    d = st.start_node(make_posternd, "smtp:" + sink.address,
                      [st.greylist(plugin, delay="2s")])
    t0 = time.monotonic()
    assert st.attempt(d.port, "keep@client.test")[0].code == 451
    wait_past(t0, DELAY + 0.2)
    assert st.attempt(d.port, "keep@client.test")[1].code == 250
    assert st.attempt(d.port, "wait@client.test", send_data=False)[0].code == 451
    assert os.path.isfile(os.path.join(d.spool, "store", "data.mdb"))
    d.stop()
    d.start()
    assert st.attempt(d.port, "keep@client.test")[1].code == 250   # remembered
    r = postern(postern_bin, d, "list")
    assert r.returncode == 0, r.stderr
    assert "192.0.2.0/24 keep@client.test user@example.test passed" in r.stdout, r.stdout
    assert "192.0.2.0/24 wait@client.test user@example.test waiting" in r.stdout, r.stdout
    # allow: a network never seen passes at once (while posternd runs)
    assert st.attempt(d.port, "x@client.test", src="203.0.113.9", send_data=False)[0].code == 451
    r = postern(postern_bin, d, "allow", "203.0.113.9")
    assert r.returncode == 0 and "203.0.113.0/24" in r.stdout, (r.stdout, r.stderr)
    assert st.attempt(d.port, "y@client.test", src="203.0.113.10", send_data=False)[0].code == 250
    # purge: forgotten, greylisted again
    r = postern(postern_bin, d, "purge", "keep@client.test")
    assert r.returncode == 0 and "purged=1" in r.stdout, (r.stdout, r.stderr)
    assert st.attempt(d.port, "keep@client.test", send_data=False)[0].code == 451
    r = postern(postern_bin, d, "purge")
    assert r.returncode == 0, r.stderr
    assert "passed" not in postern(postern_bin, d, "list").stdout


def test_dnswl_exemption(sink, make_posternd, plugin):
    """dnswl = zone[=codes]: a client listed on a DNSWL zone (served by
    dnsserver.py) with an answer code that counts is not greylisted
    (greylist=skip reason=dnswl); a code that does not count, an unlisted
    client and a zone that fails (SERVFAIL) greylist as usual."""
    from dnsserver import DNSServer

    records = {
        "20.2.0.192.wl.test": [("A", "127.0.10.2")],       # trust level 2: counts
        "21.2.0.192.wl.test": [("A", "127.0.10.0")],       # level 0: not in the codes
        "23.2.0.192.any.test": [("A", "127.0.0.4")],       # no codes: any 127/8
        "24.2.0.192.any.test": [("A", "127.0.0.255")],     # but "query refused"
    }
    with DNSServer(records, servfail=["25.2.0.192.wl.test"]) as dns:
        port = px.free_port()
        s = st.proxy_settings(port)
        s["dns_forward"] = [dns.addr]
        d = make_posternd("smtp:" + sink.address, settings=s, port=port, start=False)
        px.write_conf_d(d, "60-store.conf", st.greylist(
            plugin, delay="1h", retry_window="2h",
            dnswl="wl.test=127.0.[0..255].[1..3], any.test"))
        d.start()
        r, eod = st.attempt(d.port, "wl@client.test", src="192.0.2.20")
        assert r.code == 250 and eod.code == 250, (r, eod)
        assert d.wait_log(r"plugin=greylist dnswl=listed zone=wl\.test client=192\.0\.2\.20")
        assert st.attempt(d.port, "wl@client.test", src="192.0.2.23",
                          send_data=False)[0].code == 250
        for src in ("192.0.2.21", "192.0.2.22", "192.0.2.24", "192.0.2.25"):
            r, _ = st.attempt(d.port, "wl@client.test", src=src, send_data=False)
            assert r.code == 451, (src, r)
        assert dns.queries("20.2.0.192.wl.test", "A") >= 1
        assert d.grep(r"dnswl zone=wl\.test error=tempfail")
