"""w2. Mail authentication with the shipped configuration (issue 9, must-show
lines 8 and 6): the repository's own postern.conf and conf.d/, where SPF,
DKIM (verification) and DMARC are on as a new user gets them, with only
what a test must change given as -o (the DNS upstream, the build's
plugin_dir, the listener, the backend, an authserv-id).

`postern test` prints the Authentication-Results header posternd would
add, and an outside checker (python3-authres) reads it: spf, one dkim= per
signature with header.d, header.s, header.a and header.b, and dmarc with
header.from and policy.dmarc. posternd with the same configuration gives
the delivered message the same header. A client in trusted_networks
(loopback) is not refused even with no working DNS; a forged From is."""

import os
import socket

import pytest

import dkimtest as dt
import dmarctest as dm
import pxtest as px
import spfsuite
from dnsserver import DNSServer

pytestmark = pytest.mark.skipif(not spfsuite.spf_configured(),
                                reason="configured --without-spf: the shipped "
                                       "configuration needs the SPF plugin")

AUTHSERV = "mx.example.test"
CLIENT_IP = "192.0.2.25"            # not in trusted_networks
SENDER = "alice@example.com"


def shipped_conf():
    return os.path.join(px.top_srcdir(), "postern.conf")


def plugin_dir():
    return os.path.join(px.top_builddir(), "plugins", "built")


def common_overrides(dns):
    return ["dns_forward=" + dns.addr, "plugin_dir=" + plugin_dir(),
            "policy.authserv_id=" + AUTHSERV, "timeouts.dns=2s"]


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    return dt.make_key(d, "rsa", bits=2048), dt.make_key(d, "ed", kind="ed25519")


@pytest.fixture(scope="module")
def dns(keys):
    rsa, ed = keys
    records = {
        "example.com": [("TXT", "v=spf1 ip4:192.0.2.0/24 -all")],
        "_dmarc.example.com": [("TXT", "v=DMARC1; p=reject; rua=mailto:agg@example.com")],
        "rsa._domainkey.example.com": [("TXT", rsa.record)],
        "ed._domainkey.example.com": [("TXT", ed.record)],
    }
    with DNSServer(records) as s:
        yield s


def signed_message(keys, subject):
    rsa, ed = keys
    msg = dt.message(sender=SENDER, subject=subject)
    msg = dt.sign(msg, rsa, "rsa", domain="example.com")
    return dt.sign(msg, ed, "ed", domain="example.com")


def parsed(value):
    ar = dm.authres_of(value)
    out = []
    for r in ar.results:
        props = {"%s.%s" % (p.type, p.name): p.value for p in r.properties}
        out.append((r.method, r.result, props))
    return ar, out


def check_authres(value, msg):
    """The A-R of a good message, as an outside checker reads it."""
    ar, got = parsed(value)
    assert ar.authserv_id == AUTHSERV, value
    assert [(m, r) for m, r, _ in got] == [("spf", "pass"), ("dkim", "pass"),
                                           ("dkim", "pass"), ("dmarc", "pass")], value
    assert got[0][2] == {"smtp.mailfrom": "example.com"}, value
    b = dt.b_prefixes(msg)              # the ed25519 signature is on top
    dkims = sorted((p["header.s"], p) for m, _, p in got if m == "dkim")
    assert [(s, p["header.d"], p["header.a"], p["header.b"]) for s, p in dkims] == [
        ("ed", "example.com", "ed25519-sha256", b[0]),
        ("rsa", "example.com", "rsa-sha256", b[1])], value
    assert got[3][2] == {"header.from": "example.com", "policy.dmarc": "reject"}, value


def postern_test(postern_bin, dns, msg, sender=SENDER, client_ip=CLIENT_IP, extra=()):
    return px.postern_test(postern_bin, shipped_conf(), msg, sender, ["user@example.test"],
                           client_ip=client_ip, helo="mail.example.com",
                           overrides=common_overrides(dns) + list(extra))


def shipped_posternd(make_posternd, sink, dns):
    """posternd -c the repository's postern.conf, with -o for what a test
    must change; XCLIENT from loopback gives the client address."""
    d = make_posternd("smtp:" + sink.address, start=False)
    d.conf = shipped_conf()
    d.write_config = lambda: os.makedirs(d.spool, exist_ok=True)
    d.overrides = common_overrides(dns) + [
        "listen=127.0.0.1:%d" % d.port, "backend=smtp:" + sink.address,
        "spool_dir=" + d.spool, "log_level=debug", "hostname=mx.test",
        "relay_domains=example.test", "xclient_sources=127.0.0.1/32", "workers=2"]
    return d.start()


def xclient_session(port, msg, sender=SENDER, ip=CLIENT_IP):
    with px.SmtpClient(port) as c:
        c.greeting()
        c.ehlo("frontend.test")
        r = c.cmd("XCLIENT ADDR=%s HELO=mail.example.com" % ip)
        assert r.code == 220, r
        assert c.ehlo("mail.example.com").code == 250
        assert c.cmd("MAIL FROM:<%s>" % sender).code == 250
        assert c.cmd("RCPT TO:<user@example.test>").code == 250
        _, final = c.data(msg)
        c.quit()
        return final


def test_shipped_configuration_checks(postern_bin, dns):
    """`postern check` of the shipped files: the three plugins, in the
    order DMARC needs, and the DMARC rules in policy.actions."""
    c = px.run_postern_check(postern_bin, shipped_conf(), overrides=common_overrides(dns))
    assert c.returncode == 0, (c.stdout, c.stderr)
    chain = [l.split()[3] for l in c.stdout.splitlines() if l.startswith("# chain ")]
    assert chain == ["dkim", "spf", "dmarc"], c.stdout
    actions, = [l for l in c.stdout.splitlines() if l.startswith("policy.actions =")]
    for rule in ("dmarc-policy=reject reject", "dmarc-policy=quarantine quarantine",
                 "dmarc=temperror tempfail", "dmarc=permerror reject"):
        assert rule in actions, actions


def test_postern_test_prints_the_authres(postern_bin, dns, keys):
    msg = signed_message(keys, "shipped postern test")
    t = postern_test(postern_bin, dns, msg)
    assert t.action == "accept" and t.returncode == 0, t
    check_authres(dm.ar_value(t.headers), msg)


def test_same_authres_through_posternd(postern_bin, make_posternd, sink, dns, keys):
    msg = signed_message(keys, "shipped posternd")
    t = postern_test(postern_bin, dns, msg)
    d = shipped_posternd(make_posternd, sink, dns)
    final = xclient_session(d.port, msg)
    assert final.code == 250, final
    got, = sink.wait_for(1, mail_from=SENDER)
    values = [v for n, v in px.header_fields(got.content)
              if n.lower() == "authentication-results"]
    assert len(values) == 1, values
    check_authres(values[0], msg)
    assert values[0] == dm.ar_value(t.headers).strip(), (values[0], t.headers)


def test_forged_from_is_refused(postern_bin, make_posternd, sink, dns, keys):
    """Unsigned, from an address outside example.com's SPF: p=reject."""
    msg = dt.message(sender=SENDER, subject="forged")
    t = postern_test(postern_bin, dns, msg, sender="x@example.org",
                     client_ip="198.51.100.7")
    assert t.action == "reject" and t.reply.startswith("550 5.7.1 "), t
    assert "DMARC" in t.reply, t
    d = shipped_posternd(make_posternd, sink, dns)
    final = xclient_session(d.port, msg, sender="x@example.org", ip="198.51.100.7")
    assert final.code == 550 and final.first.startswith("550 5.7.1 "), final
    assert "DMARC" in final.first, final


def test_trusted_client_needs_no_dns(postern_bin):
    """The README's swaks line: from loopback, with a DNS that never
    answers, the message is delivered (SPF and DMARC skip trusted
    clients; DKIM finds no signature)."""
    dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)     # never answers
    dead.bind(("127.0.0.1", 0))
    try:
        msg = dt.message(sender="root@localhost.example", subject="trusted")
        t = px.postern_test(postern_bin, shipped_conf(), msg, "root@localhost.example",
                            ["you@example.org"], client_ip="127.0.0.1", helo="localhost",
                            overrides=["dns_forward=127.0.0.1@%d" % dead.getsockname()[1],
                                       "plugin_dir=" + plugin_dir(),
                                       "policy.authserv_id=" + AUTHSERV])
        assert t.action == "accept", t
        _, got = parsed(dm.ar_value(t.headers))
        assert [(m, r) for m, r, _ in got] == [("dkim", "none")], t
    finally:
        dead.close()
