"""y1. plugins/dnsbl end to end (issue 10, must-show 5): DNSBL and RHSBL
zones served by tests/e2e/dnsserver.py (dns_forward = 127.0.0.1@PORT).

The test client speaks for 192.0.2.x / 2001:db8::x with XCLIENT (posternd
trusts 127.0.0.1 as a front end); XCLIENT runs the connect stage for the
new address, where the plugin asks every DNSBL zone at once. It shows:
  - a listed client: its RCPTs get the configured action (554 5.7.1 naming
    the zone), postmaster@ and abuse@ still get through and receive the
    message (either order);
  - an unlisted client passes; an answer code the zone entry does not name
    does not list; 127.255.255.x ("the list refuses you") is logged, not a
    listing;
  - weights add up to the threshold; one zone under it passes;
  - IPv6 clients are asked in reversed nibbles;
  - RHSBL: a listed sender domain and a listed HELO name get their zones'
    actions;
  - a DNSBL zone whose server never answers costs the connect stage
    timeouts.dns, once, and the client is not listed (temperror logged);
    with on_dns_error = "tempfail" the RCPT gets 451 4.4.3;
  - the policy acts on the recorded results: action = "none" and
    policy.actions = {"dnsbl=listed tag"} delivers with X-Postern-Tag."""

import time

import pytest

import pxtest as px
from dnsserver import DNSServer

DNS_TIMEOUT = 2.0
FRONT_END = ["127.0.0.1/32"]


def rev4(addr):
    return ".".join(reversed(addr.split(".")))


RECORDS = {
    # listed, with a configured code
    rev4("192.0.2.10") + ".zen.example.net": [("A", "127.0.0.2"), ("TXT", "listed: see site")],
    # listed with a code the entry does not name
    rev4("192.0.2.11") + ".zen.example.net": [("A", "127.0.0.9")],
    # the list refuses our queries (public resolver / quota)
    rev4("192.0.2.12") + ".zen.example.net": [("A", "127.255.255.254")],
    # a hijacked answer outside 127/8 never lists
    rev4("192.0.2.16") + ".zen.example.net": [("A", "198.51.100.80")],
    # weights: two zones of weight 1 reach threshold 2, one does not
    rev4("192.0.2.13") + ".low1.example.org": [("A", "127.0.0.2")],
    rev4("192.0.2.13") + ".low2.example.org": [("A", "127.0.0.3")],
    rev4("192.0.2.14") + ".low1.example.org": [("A", "127.0.0.2")],
    # IPv6, reversed nibbles
    "0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.zen.example.net":
        [("A", "127.0.0.4")],
    # RHSBL
    "bad.example.com.dbl.example.net": [("A", "127.0.1.2")],
    "spam.example.com.dbl.example.net": [("A", "127.0.1.5")],
    # a code outside the RHSBL entry's range
    "odd.example.com.dbl.example.net": [("A", "127.0.1.200")],
}

ZONES = ("zen.example.net=127.0.0.2,127.0.0.4*2, low1.example.org, low2.example.org, "
         "slow.example.net, broken.example.net")


@pytest.fixture
def dns():
    with DNSServer(RECORDS, hang=[rev4("192.0.2.15") + ".slow.example.net"],
                   servfail=[rev4("192.0.2.15") + ".broken.example.net"]) as d:
        yield d


def dnsbl_daemon(make_posternd, plugin, sink, dns, policy=None, **options):
    opts = dict(dnsbl=ZONES, rhsbl_sender="dbl.example.net=127.0.1.[2..99]:reject",
                rhsbl_helo="dbl.example.net=127.0.1.[2..99]:tempfail", threshold=2)
    opts.update(options)
    settings = {"dns_forward": [dns.addr], "xclient_sources": FRONT_END,
                "timeouts": {"dns": "%dms" % (DNS_TIMEOUT * 1000)}}
    if policy:
        settings["policy"] = policy
    return px.posternd_with_conf_d(
        make_posternd, "smtp:" + sink.address,
        {"76-dnsbl.conf": px.plugin_section("dnsbl", path=plugin("dnsbl"), **opts)},
        settings=settings)


def session(d, addr, sender, rcpts, helo="mail.example.com"):
    """As front end: XCLIENT ADDR=addr, EHLO, MAIL, each RCPT, DATA when one
    was accepted. Returns (xclient reply, seconds it took, rcpt replies,
    final reply or None)."""
    with px.SmtpClient(d.port) as c:
        c.greeting()
        c.ehlo("frontend.example.net")
        t0 = time.monotonic()
        x = c.cmd("XCLIENT ADDR=%s" % addr)
        took = time.monotonic() - t0
        assert x.code == 220, x
        assert c.ehlo(helo).code == 250
        assert c.cmd("MAIL FROM:<%s>" % sender).code == 250
        replies = [c.cmd("RCPT TO:<%s>" % r) for r in rcpts]
        final = None
        if any(r.code == 250 for r in replies):
            final = c.data(px.make_message(subject="dnsbl " + sender))[1]
        c.quit()
    return x, took, replies, final


def test_listed_client_refused_postmaster_and_abuse_exempt(plugin, sink, make_posternd, dns):
    d = dnsbl_daemon(make_posternd, plugin, sink, dns)
    _, _, r, final = session(d, "192.0.2.10", "one@example.com",
                             ["user@example.test", "postmaster@example.test",
                              "abuse@example.test", "other@example.test"])
    assert r[0].code == 554 and r[0].lines[0].startswith("5.7.1"), r[0]
    assert "client [192.0.2.10] blocked using zen.example.net" in r[0].text, r[0]
    assert [x.code for x in r[1:]] == [250, 250, 554], r
    assert final is not None and final.code == 250, final
    msg, = sink.wait_for(1, mail_from="one@example.com")
    assert sorted(msg.rcpts) == ["abuse@example.test", "postmaster@example.test"], msg.rcpts
    assert d.grep(r"dnsbl list=client zone=zen\.example\.net query=10\.2\.0\.192\.zen\."
                  r"example\.net status=listed answer=127\.0\.0\.2 weight=2")
    assert d.grep(r"dnsbl rcpt=<postmaster@example\.test> exempt=yes")
    # the other order: the exempt recipient first, then a refused one
    _, _, r, final = session(d, "192.0.2.10", "two@example.com",
                             ["postmaster@example.test", "user@example.test"])
    assert [x.code for x in r] == [250, 554], r
    assert final.code == 250
    msg, = sink.wait_for(1, mail_from="two@example.com")
    assert msg.rcpts == ["postmaster@example.test"], msg.rcpts


def test_unlisted_unconfigured_code_and_refusal_pass(plugin, sink, make_posternd, dns):
    d = dnsbl_daemon(make_posternd, plugin, sink, dns)
    for addr, sender in (("192.0.2.20", "clean@example.com"), ("192.0.2.11", "code@example.com"),
                         ("192.0.2.12", "quota@example.com"), ("192.0.2.16", "hijack@example.com")):
        _, _, r, final = session(d, addr, sender, ["user@example.test"])
        assert r[0].code == 250, (addr, r)
        assert final.code == 250, (addr, final)
        assert sink.wait_for(1, mail_from=sender)
    # 127.0.0.9 is an answer, but not one of the entry's codes
    assert d.grep(r"zone=zen\.example\.net query=11\.2\.0\.192\.zen\.example\.net status=clean")
    assert d.grep(r"zone=zen\.example\.net query=12\.2\.0\.192\.zen\.example\.net "
                  r"status=refused answer=127\.255\.255\.254")
    assert d.grep(r"zone=zen\.example\.net query=16\.2\.0\.192\.zen\.example\.net status=clean")
    assert not d.grep(r"status=listed")


def test_weights_reach_threshold(plugin, sink, make_posternd, dns):
    d = dnsbl_daemon(make_posternd, plugin, sink, dns)
    _, _, r, _ = session(d, "192.0.2.13", "w2@example.com", ["user@example.test"])
    assert r[0].code == 554, r
    _, _, r, final = session(d, "192.0.2.14", "w1@example.com", ["user@example.test"])
    assert r[0].code == 250 and final.code == 250, r
    assert d.grep(r"dnsbl stage=connect zones=5 listed=2 temperror=0 score=2 ")
    assert d.grep(r"dnsbl stage=connect zones=5 listed=1 temperror=0 score=1 ")


def test_ipv6_client_nibbles(plugin, sink, make_posternd, dns):
    d = dnsbl_daemon(make_posternd, plugin, sink, dns)
    _, _, r, _ = session(d, "IPV6:2001:db8::10", "v6@example.com", ["user@example.test"])
    assert r[0].code == 554 and "client [2001:db8::10] blocked using zen.example.net" \
        in r[0].text, r
    assert d.grep(r"query=0\.1\.0\.0\.(0\.){20}8\.b\.d\.0\.1\.0\.0\.2\.zen\.example\.net "
                  r"status=listed answer=127\.0\.0\.4")


def test_rhsbl_sender_and_helo(plugin, sink, make_posternd, dns):
    d = dnsbl_daemon(make_posternd, plugin, sink, dns)
    _, _, r, final = session(d, "192.0.2.20", "someone@bad.example.com",
                             ["user@example.test", "postmaster@example.test"])
    assert r[0].code == 554 and "sender domain bad.example.com blocked using " \
        "dbl.example.net" in r[0].text, r
    assert r[1].code == 250 and final.code == 250, (r, final)
    # the HELO zone entry says tempfail
    _, _, r, _ = session(d, "192.0.2.20", "fine@example.com", ["user@example.test"],
                         helo="spam.example.com")
    assert r[0].code == 451 and r[0].lines[0].startswith("4.7.1") and \
        "HELO name spam.example.com blocked using dbl.example.net" in r[0].text, r
    # 127.0.1.200 is outside the entry's 127.0.1.[2..99]
    _, _, r, final = session(d, "192.0.2.20", "x@odd.example.com", ["user@example.test"])
    assert r[0].code == 250 and final.code == 250, r


def test_hanging_zone_costs_only_the_dns_timeout(plugin, sink, make_posternd, dns):
    d = dnsbl_daemon(make_posternd, plugin, sink, dns)
    x, took, r, final = session(d, "192.0.2.15", "slow@example.com", ["user@example.test"])
    # every zone is asked at once: one timeouts.dns in all, not one per zone
    assert DNS_TIMEOUT * 0.8 <= took < DNS_TIMEOUT + 1.5, took
    assert r[0].code == 250 and final.code == 250, (r, final)
    assert d.grep(r"zone=slow\.example\.net query=15\.2\.0\.192\.slow\.example\.net "
                  r"status=temperror")
    assert d.grep(r"zone=broken\.example\.net query=15\.2\.0\.192\.broken\.example\.net "
                  r"status=temperror")
    # other clients are not held up meanwhile: an unlisted one answers at once
    _, took, r, _ = session(d, "192.0.2.20", "quick@example.com", ["user@example.test"])
    assert took < 1.0 and r[0].code == 250, (took, r)


def test_dns_error_tempfail_option(plugin, sink, make_posternd, dns):
    d = dnsbl_daemon(make_posternd, plugin, sink, dns, on_dns_error="tempfail",
                     dnsbl="broken.example.net")
    _, _, r, _ = session(d, "192.0.2.15", "tf@example.com", ["user@example.test"])
    assert r[0].code == 451 and r[0].lines[0].startswith("4.4.3"), r


def test_policy_acts_on_the_result(plugin, sink, make_posternd, dns):
    """The plugin only records (action none; zone weight 2 >= threshold 2):
    the policy's rule tags the message instead."""
    d = dnsbl_daemon(make_posternd, plugin, sink, dns, action="none",
                     policy={"actions": ["dnsbl=listed tag"]})
    _, _, r, final = session(d, "192.0.2.10", "tag@example.com", ["user@example.test"])
    assert r[0].code == 250 and final.code == 250, (r, final)
    msg, = sink.wait_for(1, mail_from="tag@example.com")
    tags = msg.header("X-Postern-Tag")
    assert tags and "dnsbl=listed" in tags[0], msg.raw[:600]


def test_bad_zone_entry_is_a_config_error(plugin, sink, make_posternd, dns, tmp_path):
    d = make_posternd("smtp:" + sink.address, start=False)
    px.write_conf_d(d, "76-dnsbl.conf", px.plugin_section(
        "dnsbl", path=plugin("dnsbl"), dnsbl="zen.example.net=127.0.0.[2..x]"))
    d.write_config()
    res = px.run_check(d.binary, d.conf)
    assert res.returncode != 0, res
    assert "76-dnsbl.conf" in res.stderr + res.stdout and "answer code" in res.stderr + \
        res.stdout, res


def test_policy_rule_refuses_only_the_recipient_it_matched(plugin, sink, make_posternd, dns):
    """A policy rule acts on the result recorded by this RCPT's call only:
    after a listed recipient was refused by the rule, the exempt
    postmaster@ (for which the plugin records nothing) still gets through;
    an earlier RCPT's result is not matched again."""
    d = dnsbl_daemon(make_posternd, plugin, sink, dns, action="none",
                     policy={"actions": ["dnsbl=listed reject"]})
    _, _, r, final = session(d, "192.0.2.10", "rule@example.com",
                             ["user@example.test", "postmaster@example.test"])
    assert r[0].code // 100 == 5, r
    assert r[1].code == 250, r
    assert final is not None and final.code == 250, final
    msg, = sink.wait_for(1, mail_from="rule@example.com")
    assert msg.rcpts == ["postmaster@example.test"], msg.rcpts
