"""y2. plugins/conncheck end to end (issue 10, connection checks).

iprev: forward-confirmed reverse DNS, answered by tests/e2e/dnsserver.py;
the Authentication-Results header the backend receives is parsed with
python3-authres (RFC 8601): pass (with the confirmed name), fail (the name
does not lead back), permerror (no PTR), temperror (PTR SERVFAIL, or the
forward lookup fails), for IPv4 and IPv6, in every transaction of a
session. HELO: the results (invalid, nonfqdn, mismatch, forged, pass) are
acted on by policy rules at HELO.

The client speaks for other addresses with XCLIENT (posternd trusts
127.0.0.1 as a front end). The addresses are 198.18.0.x and 3fff::x:
libunbound answers the reverse zones of the documentation ranges
(192.0.2.0/24, 2001:db8::/32, AS112 defaults) itself, with NXDOMAIN."""

import authres
import pytest

import pxtest as px
from dnsserver import DNSServer

OURS = "mx.example.org"
FRONT_END = ["127.0.0.1/32"]


def rev4(addr):
    return ".".join(reversed(addr.split("."))) + ".in-addr.arpa"


def rev6_3fff(last):
    """3fff::LAST (LAST one hex digit) in ip6.arpa."""
    return last + "." + "0." * 27 + "f.f.f.3.ip6.arpa"


RECORDS = {
    rev4("198.18.0.10"): [("PTR", "mail.example.com.")],
    "mail.example.com": [("A", "198.18.0.10"), ("A", "198.18.0.77")],
    rev4("198.18.0.11"): [("PTR", "liar.example.com.")],
    "liar.example.com": [("A", "198.18.0.99")],
    rev4("198.18.0.14"): [("PTR", "broken-fwd.example.com.")],
    # two names: the second one confirms
    rev4("198.18.0.15"): [("PTR", "gone.example.com."), ("PTR", "two.example.com.")],
    "two.example.com": [("A", "198.18.0.15")],
    rev6_3fff("1"): [("PTR", "v6.example.net.")],
    "v6.example.net": [("AAAA", "3fff::1")],
}


@pytest.fixture
def dns():
    with DNSServer(RECORDS, servfail=[rev4("198.18.0.13"), "broken-fwd.example.com"]) as d:
        yield d


def cc_daemon(make_posternd, plugin, sink, dns, actions=(), **options):
    settings = {"dns_forward": [dns.addr], "xclient_sources": FRONT_END,
                "timeouts": {"dns": "2s"}, "policy": {"authserv_id": OURS}}
    if actions:
        settings["policy"]["actions"] = list(actions)
    return px.posternd_with_conf_d(
        make_posternd, "smtp:" + sink.address,
        {"74-conncheck.conf": px.plugin_section("conncheck", path=plugin("conncheck"),
                                                **options)},
        settings=settings, hostname=OURS)


def as_client(c, addr):
    c.greeting()
    c.ehlo("frontend.example.net")
    x = c.cmd("XCLIENT ADDR=%s" % addr)
    assert x.code == 220, x


def send(d, addr, sender, n=1, helo="client.example.net"):
    with px.SmtpClient(d.port) as c:
        as_client(c, addr)
        assert c.ehlo(helo).code == 250
        for i in range(n):
            assert c.cmd("MAIL FROM:<%s>" % (sender % i)).code == 250
            assert c.cmd("RCPT TO:<user@example.test>").code == 250
            assert c.data(px.make_message(subject="iprev"))[1].code == 250
        c.quit()


def ours(msg):
    """Our Authentication-Results field, parsed by python3-authres."""
    fields = [v for n, v in px.header_fields(msg.content)
              if n.lower() == "authentication-results"]
    mine = [authres.AuthenticationResultsHeader.parse("Authentication-Results: " + v)
            for v in fields]
    mine = [h for h in mine if h.authserv_id == OURS]
    assert len(mine) == 1, fields
    return mine[0]


def iprev_of(msg):
    res = [r for r in ours(msg).results if r.method == "iprev"]
    assert len(res) == 1, str(ours(msg))
    props = {(p.type, p.name): p.value for p in res[0].properties}
    return res[0].result, props


@pytest.mark.parametrize("addr,want,xaddr", [
    ("198.18.0.10", "pass", "198.18.0.10"),
    ("198.18.0.15", "pass", "198.18.0.15"),
    ("198.18.0.11", "fail", "198.18.0.11"),
    ("198.18.0.12", "permerror", "198.18.0.12"),
    ("198.18.0.13", "temperror", "198.18.0.13"),
    ("198.18.0.14", "temperror", "198.18.0.14"),
    ("IPV6:3fff::1", "pass", "3fff::1"),
])
def test_iprev_in_authentication_results(plugin, sink, make_posternd, dns, addr, want, xaddr):
    d = cc_daemon(make_posternd, plugin, sink, dns)
    sender = "ip-" + xaddr.replace(":", "_") + "-%d@example.com"
    send(d, addr, sender, n=2)
    for i in range(2):          # the session's result in every transaction
        msg, = sink.wait_for(1, mail_from=sender % i)
        result, props = iprev_of(msg)
        assert result == want, str(ours(msg))
        assert props == {("policy", "iprev"): xaddr}, props
    line = d.grep(r"iprev result=%s addr=%s " % (want, xaddr))
    assert len(line) == 1, d.grep("iprev result")
    if addr == "198.18.0.10":
        assert "name=mail.example.com" in line[0]
        raw = [v for n, v in px.header_fields(msg.content) if n == "Authentication-Results"]
        assert raw == [OURS + "; iprev=pass policy.iprev=198.18.0.10 (mail.example.com)"], raw
    if addr == "198.18.0.15":
        assert "name=two.example.com" in line[0]


def test_iprev_policy_rule_at_connect(plugin, sink, make_posternd, dns):
    d = cc_daemon(make_posternd, plugin, sink, dns, actions=["iprev=permerror reject"])
    with px.SmtpClient(d.port) as c:
        c.greeting()
        c.ehlo("frontend.example.net")
        r = c.cmd("XCLIENT ADDR=198.18.0.12")
        assert r.code == 554, r
    send(d, "198.18.0.10", "fine-%d@example.com")     # others still pass


HELO_RULES = ["helo=forged reject", "helo=mismatch tempfail", "helo=invalid reject"]


@pytest.mark.parametrize("helo,code,result", [
    ("client.example.net", 250, "pass"),
    ("[198.18.0.10]", 250, "pass"),
    ("localhost", 250, "nonfqdn"),
    (OURS, 550, "forged"),
    ("MX.Example.ORG.", 550, "forged"),
    ("[198.51.100.25]", 550, "forged"),
    ("[198.18.0.99]", 451, "mismatch"),
    ("[IPv6:3fff::9]", 451, "mismatch"),
    ("198.18.0.10", 550, "invalid"),
    ("bad..example.net", 550, "invalid"),
    ("[198.18.0.300]", 550, "invalid"),
    ("under-_score!.example", 550, "invalid"),
])
def test_helo_results_acted_on_by_policy(plugin, sink, make_posternd, dns, helo, code, result):
    d = cc_daemon(make_posternd, plugin, sink, dns, actions=HELO_RULES, iprev=False,
                  own_addresses="198.51.100.25")
    with px.SmtpClient(d.port) as c:
        as_client(c, "198.18.0.10")
        r = c.ehlo(helo)
        assert r.code == code, (helo, r)
        if code != 250:
            assert r.lines[0].startswith("%d." % (code // 100)), r
        c.quit()
    assert d.grep(r"helo result=%s helo=" % result), d.grep("helo result")


def test_own_network_may_use_our_name(plugin, sink, make_posternd, dns):
    """A client in own_networks (here 127.0.0.1, no XCLIENT) may say our
    name: that is pass, and its mail goes through."""
    d = cc_daemon(make_posternd, plugin, sink, dns, actions=HELO_RULES)
    res = px.send_message(d.port, px.make_message(), mail_from="local@example.com", helo=OURS)
    assert res["ehlo"].code == 250 and res["final"].code == 250, res
    assert d.grep(r"helo result=pass helo=\"%s\"" % OURS.replace(".", r"\."))
