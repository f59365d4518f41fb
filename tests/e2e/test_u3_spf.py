"""u3. The SPF plugin in posternd, end to end (issue 9): a real backend
(smtp-sink), the test DNS server (dnsserver.py) as the resolver's upstream,
and clients whose address a trusted front end gives with XCLIENT (libspf2
lets every loopback client pass).

- pass: delivered, with "spf=pass smtp.mailfrom=DOMAIN" in
  Authentication-Results and a Received-SPF field (received_spf = yes);
- fail: MAIL refused with the default mapping's 550 5.7.23 and the
  explanation (the domain's exp= text, or the plugin's own);
- temperror on SERVFAIL: 451 4.7.24; a DNS that never answers costs one
  timeouts.dns, not one per lookup nor one per identity;
- the policy maps results to other actions (spf=fail tag, spf=softfail
  reject with the plugin's reply);
- the null sender is checked by its HELO name (smtp.helo=).
"""

import time

import pytest

import pxtest as px
from dnsserver import DNSServer
import spfsuite

pytestmark = pytest.mark.skipif(not spfsuite.spf_configured(),
                                reason="configured --without-spf: no SPF plugin")

AUTHSERV = "mx.example.test"
GOOD_IP = "192.0.2.10"
BAD_IP = "198.51.100.7"
FRONT_END = {"xclient_sources": ["127.0.0.1/32"]}

RECORDS = {
    "pass.example.net": [("TXT", "v=spf1 ip4:192.0.2.0/24 -all")],
    "exp.example.net": [("TXT", "v=spf1 ip4:192.0.2.10 -all exp=why.exp.example.net")],
    "why.exp.example.net": [("TXT", "%{i} may not send mail for %{d}")],
    "plain.example.net": [("TXT", "v=spf1 a -all"), ("A", GOOD_IP)],
    "soft.example.net": [("TXT", "v=spf1 ip4:192.0.2.10 ~all")],
    "mx.helo.example.net": [("TXT", "v=spf1 ip4:192.0.2.10 -all"), ("A", GOOD_IP)],
    "broken.example.net": [("TXT", "v=spf1 include:sub.broken.example.net -all")],
}


@pytest.fixture
def dns():
    with DNSServer(RECORDS, servfail=["servfail.example.net", "sub.broken.example.net"],
                   hang=["hang.example.net", "*.hang.example.net"]) as d:
        yield d


def start(make_posternd, plugin, sink, dns, spf_opts=None, settings=None, dns_timeout="5s"):
    s = {"policy": {"authserv_id": AUTHSERV}, "dns_forward": [dns.addr],
         "timeouts": {"dns": dns_timeout}}
    s.update(FRONT_END)
    for k, v in (settings or {}).items():
        s[k] = dict(s.get(k, {}), **v) if isinstance(v, dict) else v
    opts = {"path": plugin("spf"), "timeout": "20s", "received_spf": True}
    opts.update(spf_opts or {})
    return px.posternd_with_conf_d(make_posternd, "smtp:" + sink.address,
                                   {"73-spf.conf": px.plugin_section("spf", **opts)},
                                   settings=s)


def session(port, sender, ip, helo="mx.helo.example.net", message=None):
    """A front end speaks for client ip (XCLIENT); returns (mail reply,
    final reply, seconds MAIL took)."""
    with px.SmtpClient(port) as c:
        c.greeting()
        c.ehlo("frontend.test")
        r = c.cmd("XCLIENT ADDR=%s HELO=%s" % (ip, helo))
        assert r.code == 220, r
        assert c.ehlo(helo).code == 250
        t0 = time.monotonic()
        mail = c.cmd("MAIL FROM:<%s>" % sender)
        took = time.monotonic() - t0
        if mail.code != 250:
            c.quit()
            return mail, mail, took
        rc = c.cmd("RCPT TO:<user@example.test>")
        if rc.code != 250:
            c.quit()
            return mail, rc, took
        _, final = c.data(message or px.make_message())
        c.quit()
        return mail, final, took


def auth_results(m):
    return " ".join(" ".join(v.split()) for v in m.header("Authentication-Results"))


def test_pass_is_delivered_with_results(plugin, make_sink, make_posternd, dns):
    sink = make_sink()
    d = start(make_posternd, plugin, sink, dns)
    mail, final, _ = session(d.port, "alice@pass.example.net", GOOD_IP)
    assert mail.code == 250 and final.code == 250, (mail, final)
    m = sink.wait_for(1, mail_from="alice@pass.example.net")[0]
    assert "spf=pass smtp.mailfrom=pass.example.net" in auth_results(m), m.header(
        "Authentication-Results")
    rs = " ".join(m.header("Received-SPF"))
    assert rs.split()[0] == "pass" and "client-ip=%s;" % GOOD_IP in rs, rs
    assert "identity=mailfrom;" in rs and "receiver=" in rs, rs


def test_fail_is_refused_with_the_domains_explanation(plugin, make_sink, make_posternd, dns):
    sink = make_sink()
    d = start(make_posternd, plugin, sink, dns)
    mail, _, _ = session(d.port, "bob@exp.example.net", BAD_IP)
    assert mail.code == 550, mail
    assert mail.first.startswith("550 5.7.23 SPF: "), mail
    assert "%s may not send mail for exp.example.net" % BAD_IP in mail.first, mail
    assert "openspf" not in mail.text, mail
    assert not sink.find(mail_from="bob@exp.example.net")


def test_fail_uses_our_explanation(plugin, make_sink, make_posternd, dns):
    sink = make_sink()
    d = start(make_posternd, plugin, sink, dns,
              spf_opts={"explanation": "%{o} does not allow %{i}: see https://mx.example.test/spf"})
    mail, _, _ = session(d.port, "carol@plain.example.net", BAD_IP)
    assert mail.first == ("550 5.7.23 SPF: plain.example.net does not allow %s: see "
                          "https://mx.example.test/spf" % BAD_IP), mail


def test_servfail_is_temperror(plugin, make_sink, make_posternd, dns):
    sink = make_sink()
    d = start(make_posternd, plugin, sink, dns)
    for sender in ("dave@servfail.example.net", "erin@broken.example.net"):
        mail, _, _ = session(d.port, sender, GOOD_IP)
        assert mail.code == 451 and mail.first.startswith("451 4.7.24 SPF: "), (sender, mail)
    assert d.grep(r"plugin=spf.* result=temperror identity=mailfrom domain=broken.example.net")


def test_hanging_dns_costs_one_timeout(plugin, make_sink, make_posternd, dns):
    """Every name below hang.example.net hangs; the HELO name too, and
    helo_check is on: still one timeouts.dns (1s) for the whole MAIL."""
    sink = make_sink()
    d = start(make_posternd, plugin, sink, dns, spf_opts={"helo_check": True},
              dns_timeout="1s")
    mail, _, took = session(d.port, "frank@hang.example.net", GOOD_IP,
                            helo="mx.hang.example.net")
    assert mail.code == 451 and mail.first.startswith("451 4.7.24"), mail
    assert 0.9 <= took < 1.9, took
    assert dns.queries("hang.example.net", "TXT") >= 1
    # the plugin asked once, and skipped the HELO check (this call's DNS is down)
    assert d.grep(r"plugin=spf check identity=frank@hang.example.net .*lookups=1 ")
    assert not d.grep(r"plugin=spf result=\S+ identity=helo")


def test_policy_maps_results(plugin, make_sink, make_posternd, dns):
    sink = make_sink()
    d = start(make_posternd, plugin, sink, dns,
              settings={"policy": {"actions": ["spf=fail tag", "spf=softfail reject"]}})
    mail, final, _ = session(d.port, "gina@plain.example.net", BAD_IP)
    assert mail.code == 250 and final.code == 250, (mail, final)
    m = sink.wait_for(1, mail_from="gina@plain.example.net")[0]
    assert "spf=fail smtp.mailfrom=plain.example.net" in auth_results(m)
    mail, _, _ = session(d.port, "hank@soft.example.net", BAD_IP)
    assert mail.code == 550 and mail.first.startswith("550 5.7.23 SPF: "), mail


def test_null_sender_checks_helo(plugin, make_sink, make_posternd, dns):
    sink = make_sink()
    d = start(make_posternd, plugin, sink, dns)
    mail, final, _ = session(d.port, "", GOOD_IP, helo="mx.helo.example.net")
    assert final.code == 250, final
    m = sink.wait_for(1, mail_from="")[0]
    assert "spf=pass smtp.helo=mx.helo.example.net" in auth_results(m), auth_results(m)
    mail, _, _ = session(d.port, "", BAD_IP, helo="mx.helo.example.net")
    assert mail.code == 550 and mail.first.startswith("550 5.7.23"), mail
