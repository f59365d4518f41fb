"""v. The DKIM plugin (issue 9), through posternd, a test DNS server
(dnsserver.py, the host's dns_forward) and a backend that keeps exact
bytes (FaultBackend); the Authentication-Results the backend received is
parsed with python3-authres.

  - RFC 8463's example message (an Ed25519 and an RSA signature, from
    python3-dkim's test data) passes, both signatures;
  - messages signed here with python3-dkim (rsa-2048, ed25519) pass, and
    so do messages signed by the plugin itself (libopendkim);
  - a changed body, a changed signed header, a missing key, a revoked key
    (p=), rsa-sha1, a 512-bit key and a key lookup that SERVFAILs each
    give their result with the right reason (A-R and log);
  - signing: mail from sign_networks or an authenticated client, From one
    of sign_keys' domains, gets our signature, which python3-dkim
    verifies (rsa-sha256 and ed25519-sha256); other mail is not signed;
  - configuration errors are reported.
"""

import os
import time

import pytest

import dkimtest as dt
import pxtest as px
from dnsserver import DNSServer

OURS = "mx.example.test"


@pytest.fixture(autouse=True)
def full_malloc_stacks(monkeypatch):
    """Under ASan, unwind malloc stacks fully for the posternd these tests
    start: OpenSSL has no frame pointers, so the fast unwinder stops in
    libcrypto, and tests/lsan.supp's entry for libopendkim's signing-key
    leak (dkim_privkey_load) could not match."""
    if "ASAN_OPTIONS" in os.environ:
        monkeypatch.setenv("ASAN_OPTIONS", os.environ["ASAN_OPTIONS"] +
                           ":fast_unwind_on_malloc=0")


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("dkimkeys")
    px.make_traversable(str(d))
    return {
        "r2048": dt.make_key(d, "r2048", "rsa", 2048),
        "r1024": dt.make_key(d, "r1024", "rsa", 1024),
        "r512": dt.make_key(d, "r512", "rsa", 512),
        "ed1": dt.make_key(d, "ed1", "ed25519"),
        "sign-rsa": dt.make_key(d, "sign-rsa", "rsa", 2048),
        "sign-ed": dt.make_key(d, "sign-ed", "ed25519"),
    }


def records_for(keys):
    r = dt.rfc8463_records()
    for sel in ("r2048", "r1024", "r512", "ed1"):
        r["%s._domainkey.example.net" % sel] = [("TXT", keys[sel].record)]
    r["revoked._domainkey.example.net"] = [("TXT", "v=DKIM1; k=rsa; p=")]
    r["rsa._domainkey.example.org"] = [("TXT", keys["sign-rsa"].record)]
    r["ed._domainkey.example.org"] = [("TXT", keys["sign-ed"].record)]
    r["example.net"] = [("A", "192.0.2.1")]
    return r


@pytest.fixture(scope="module")
def dns(keys):
    s = DNSServer(records_for(keys), servfail=["broken._domainkey.example.net"])
    s.start()
    try:
        yield s
    finally:
        s.stop()


def dkim_daemon(plugin, make_posternd, backend, dns, extra_settings=None, **options):
    settings = {"policy": {"authserv_id": OURS}, "dns_forward": [dns.addr],
                "timeouts": {"dns": "3s"}}
    settings.update(extra_settings or {})
    sec = px.plugin_section("dkim", path=plugin("dkim"), **options)
    return px.posternd_with_conf_d(make_posternd, "smtp:" + backend.address,
                                   {"72-dkim.conf": sec}, settings=settings)


def deliver(d, backend, msg, sender):
    res = px.send_message(d.port, msg, mail_from=sender)
    assert res["final"].code == 250, res
    got = px.wait_until(lambda: [a for a in backend.accepted if a["mail_from"] == sender],
                        px.DELIVERY_WAIT, "message from %s at the backend" % sender)
    assert len(got) == 1, got
    return got[0]["data"]


def results(data):
    return dt.authres_of(data, OURS)


# ------------------------------------------------------------- verifying --

def test_rfc8463_example_passes(plugin, make_posternd, make_fault_backend, dns):
    be = make_fault_backend()
    d = dkim_daemon(plugin, make_posternd, be, dns)
    msg = dt.rfc8463_message()
    data = deliver(d, be, msg, "rfc8463@football.example.com")
    got, raw = results(data)
    b = dt.b_prefixes(msg)
    assert [(r, p["header.d"], p["header.s"], p["header.b"]) for r, _, p in got] == [
        ("pass", "football.example.com", "brisbane", b[0]),
        ("pass", "football.example.com", "test", b[1])], raw
    assert all(reason is None for _, reason, _ in got), raw
    assert len(d.grep(r"plugin=dkim verify result=pass d=football.example.com s=brisbane "
                      r"a=ed25519-sha256")) == 1
    assert len(d.grep(r"plugin=dkim verify result=pass d=football.example.com s=test "
                      r"a=rsa-sha256 bits=1024")) == 1
    # the keys came through the test DNS server (the host's resolver)
    assert dns.queries("brisbane._domainkey.football.example.com", "TXT") >= 1
    assert dns.queries("test._domainkey.football.example.com", "TXT") >= 1


def test_dkimpy_signed_pass(plugin, make_posternd, make_fault_backend, dns, keys):
    """rsa-2048 relaxed/simple and ed25519 simple/simple on one message, and
    an rsa-1024 relaxed/relaxed one (the RFC 8301 minimum) on another."""
    be = make_fault_backend()
    d = dkim_daemon(plugin, make_posternd, be, dns)
    m = dt.sign(dt.message(), keys["r2048"], "r2048")
    m = dt.sign(m, keys["ed1"], "ed1", canonicalize=(b"simple", b"simple"))
    got, raw = results(deliver(d, be, m, "pyrsa@example.net"))
    b = dt.b_prefixes(m)
    assert [(r, p["header.d"], p["header.s"], p["header.b"]) for r, _, p in got] == [
        ("pass", "example.net", "ed1", b[0]), ("pass", "example.net", "r2048", b[1])], raw
    m = dt.sign(dt.message(), keys["r1024"], "r1024", canonicalize=(b"relaxed", b"relaxed"))
    got, raw = results(deliver(d, be, m, "py1024@example.net"))
    assert [(r, p["header.s"]) for r, _, p in got] == [("pass", "r1024")], raw


def test_unsigned_is_none(plugin, make_posternd, make_fault_backend, dns):
    be = make_fault_backend()
    d = dkim_daemon(plugin, make_posternd, be, dns)
    data = deliver(d, be, dt.message(), "unsigned@example.net")
    got, raw = results(data)
    assert got == [("none", None, {})], raw


FAILURES = [
    # (name, how to spoil a message signed with r2048, result, reason part)
    ("body", lambda m: m.replace(b"this message is signed", b"this message is changed"),
     "fail", "body hash did not verify"),
    ("header", lambda m: m.replace(b"Subject: DKIM test", b"Subject: DKIM pest"),
     "fail", "signature did not verify"),
]


def spoiled(keys):
    """(sender, message, want result, reason part) for every failure case."""
    out = []
    for name, spoil, want, why in FAILURES:
        m = dt.sign(dt.message(subject="DKIM test"), keys["r2048"], "r2048")
        out.append(("%s@example.net" % name, spoil(m), "r2048", want, why))
    out.append(("nokey@example.net", dt.sign(dt.message(), keys["r2048"], "missing"),
                "missing", "permerror", "no key for signature"))
    out.append(("revoked@example.net", dt.sign(dt.message(), keys["r2048"], "revoked"),
                "revoked", "permerror", "key revoked"))
    out.append(("sha1@example.net", dt.sign(dt.message(), keys["r2048"], "r2048",
                                            algorithm="rsa-sha1"),
                "r2048", "fail", "rsa-sha1 is not acceptable (RFC 8301)"))
    out.append(("small@example.net", dt.sign(dt.message(), keys["r512"], "r512"),
                "r512", "fail", "key too small"))
    out.append(("servfail@example.net", dt.sign(dt.message(), keys["r2048"], "broken"),
                "broken", "temperror", "key lookup failed"))
    return out


def test_failures_with_reasons(plugin, make_posternd, make_fault_backend, dns, keys):
    be = make_fault_backend()
    d = dkim_daemon(plugin, make_posternd, be, dns)
    for sender, msg, sel, want, why in spoiled(keys):
        got, raw = results(deliver(d, be, msg, sender))
        assert len(got) == 1, (sender, raw)
        result, reason, props = got[0]
        assert (result, props["header.d"], props["header.s"]) == (want, "example.net", sel), \
            (sender, raw)
        assert reason is not None and why in reason, (sender, raw)
        assert props["header.b"] == dt.b_prefixes(msg)[0], (sender, raw)
        assert d.grep(r"verify result=%s d=example.net s=%s .*reason=\"[^\"]*%s" % (
            want, sel, why.replace("(", r"\(").replace(")", r"\)"))), (sender, d.log()[-3000:])
    # the 512-bit reason names the size
    assert d.grep(r"s=r512 .*reason=\"key too small: 512 bits, at least 1024 required")


def test_policy_acts_on_dkim_fail(plugin, make_posternd, make_fault_backend, dns, keys):
    """policy.actions sees each signature's result: dkim=fail reject."""
    be = make_fault_backend()
    d = dkim_daemon(plugin, make_posternd, be, dns, extra_settings={
        "policy": {"authserv_id": OURS, "actions": ["dkim=fail reject"]}})
    m = dt.sign(dt.message(), keys["r2048"], "r2048").replace(b"is signed", b"is forged")
    res = px.send_message(d.port, m, mail_from="forged@example.net")
    assert res["final"].code == 550, res
    assert not [a for a in be.accepted if a["mail_from"] == "forged@example.net"]
    ok = dt.sign(dt.message(), keys["r2048"], "r2048")
    got, raw = results(deliver(d, be, ok, "fine@example.net"))
    assert got[0][0] == "pass", raw


def test_max_signatures(plugin, make_posternd, make_fault_backend, dns, keys):
    be = make_fault_backend()
    d = dkim_daemon(plugin, make_posternd, be, dns, max_signatures=2)
    m = dt.message()
    for _ in range(4):
        m = dt.sign(m, keys["ed1"], "ed1")
    got, raw = results(deliver(d, be, m, "many@example.net"))
    assert [r for r, _, _ in got] == ["pass", "pass"], raw
    assert d.grep(r"verify signatures=4 ignored=2 max_signatures=2")


# --------------------------------------------------------------- signing --

# The test client (127.0.0.1) is outside trusted_networks here, so that
# sign_networks alone decides; test_trusted_network_is_signed covers the other.
UNTRUSTED = {"trusted_networks": ["198.51.100.0/24"]}


def signing_daemon(plugin, make_posternd, be, dns, keys, networks="127.0.0.1/32",
                   extra_settings=UNTRUSTED):
    return dkim_daemon(plugin, make_posternd, be, dns, extra_settings=extra_settings, sign=True,
                       sign_keys=["example.org:rsa:%s" % keys["sign-rsa"].path,
                                  "EXAMPLE.net:ed:%s:ed25519-sha256" % keys["sign-ed"].path],
                       sign_networks=networks)


def test_sign_then_dkimpy_verifies(plugin, make_posternd, make_fault_backend, dns, keys):
    be = make_fault_backend()
    d = signing_daemon(plugin, make_posternd, be, dns, keys)
    recs = records_for(keys)
    recs["ed._domainkey.example.net"] = [("TXT", keys["sign-ed"].record)]
    # rsa-sha256 for example.org
    data = deliver(d, be, dt.message(sender="carol@example.org"), "carol@example.org")
    sigs = [v for n, v in px.header_fields(data) if n.lower() == "dkim-signature"]
    assert len(sigs) == 1, data[:1500]
    assert "a=rsa-sha256" in sigs[0] and "d=example.org" in sigs[0] and "s=rsa" in sigs[0]
    assert "c=relaxed/relaxed" in sigs[0], sigs[0]
    # RFC 6376 5.4.1's fields, From oversigned; no trace field, no other signature
    h = dict(kv.strip().split("=", 1) for kv in sigs[0].split(";") if "=" in kv)["h"]
    assert [x.lower() for x in h.replace(" ", "").split(":")] == [
        "from", "to", "subject", "date", "message-id", "mime-version", "from"], sigs[0]
    assert dt.dkimpy_verify(data, recs), data[:2000]
    # the field is folded with CRLF (the bytes the backend got)
    head = data.split(b"\r\n\r\n", 1)[0]
    assert b"\n" not in head.replace(b"\r\n", b""), head
    # ed25519-sha256 for example.net (the From domain, any case)
    data = deliver(d, be, dt.message(sender="dave@Example.NET"), "dave@example.net")
    sigs = [v for n, v in px.header_fields(data) if n.lower() == "dkim-signature"]
    assert len(sigs) == 1 and "a=ed25519-sha256" in sigs[0] and "d=example.net" in sigs[0]
    dns_ed = dict(recs)
    assert dt.dkimpy_verify(data, dns_ed), data[:2000]
    assert d.grep(r"plugin=dkim sign d=example.org s=rsa a=rsa-sha256 client=network")
    assert d.grep(r"plugin=dkim sign d=example.net s=ed a=ed25519-sha256 client=network")


def test_signed_here_verified_here(plugin, make_posternd, make_fault_backend, dns, keys):
    """What the plugin signed (libopendkim) passes the plugin's verifier."""
    be1, be2 = make_fault_backend(), make_fault_backend()
    signer = signing_daemon(plugin, make_posternd, be1, dns, keys)
    verifier = dkim_daemon(plugin, make_posternd, be2, dns)
    signed = deliver(signer, be1, dt.message(sender="erin@example.org"), "erin@example.org")
    # strip what the signer's host added above the signature (Received, A-R)
    rest = signed
    for _ in range(10):
        field, after = px.pop_header_field(rest)
        if field.lower().startswith(b"dkim-signature:"):
            break
        rest = after
    got, raw = results(deliver(verifier, be2, rest, "erin@example.org"))
    assert [(r, p["header.d"], p["header.s"]) for r, _, p in got] == [
        ("pass", "example.org", "rsa")], raw


def test_not_signed_when_not_ours(plugin, make_posternd, make_fault_backend, dns, keys):
    """A client outside sign_networks, or a From domain without a key: no
    signature added."""
    be = make_fault_backend()
    d = signing_daemon(plugin, make_posternd, be, dns, keys, networks="192.0.2.0/24")
    data = deliver(d, be, dt.message(sender="frank@example.org"), "frank@example.org")
    assert not [1 for n, _ in px.header_fields(data) if n.lower() == "dkim-signature"]
    be2 = make_fault_backend()
    d2 = signing_daemon(plugin, make_posternd, be2, dns, keys)
    data = deliver(d2, be2, dt.message(sender="gina@example.com"), "gina@example.com")
    assert not [1 for n, _ in px.header_fields(data) if n.lower() == "dkim-signature"]
    assert d2.grep(r"sign skipped=yes from_domain=example.com reason=\"no key\"")


def test_trusted_network_is_signed(plugin, make_posternd, make_fault_backend, dns, keys):
    """A client in the host's trusted_networks (get("client.trusted") = yes)
    is signed even outside sign_networks."""
    be = make_fault_backend()
    d = signing_daemon(plugin, make_posternd, be, dns, keys, networks="192.0.2.0/24",
                       extra_settings={"trusted_networks": ["127.0.0.0/8"]})
    data = deliver(d, be, dt.message(sender="hank@example.org"), "hank@example.org")
    assert [1 for n, _ in px.header_fields(data) if n.lower() == "dkim-signature"], data[:1500]
    assert d.grep(r"plugin=dkim sign d=example.org s=rsa a=rsa-sha256 client=trusted")


# --------------------------------------------------------- configuration --

@pytest.mark.parametrize("options,error", [
    ({"sign": True}, "sign = yes needs sign_keys"),
    ({"sign": True, "sign_keys": "example.org:rsa:/nonexistent/key.pem"},
     "/nonexistent/key.pem: No such file or directory"),
    ({"sign_keys": "example.org:rsa"}, "is not domain:selector:/path/to/key"),
    ({"sign_keys": "example.org:rsa:/x:rsa-sha1"}, "algorithm 'rsa-sha1' is neither"),
    ({"canonicalization": "relaxed/loose"}, "canonicalization: 'relaxed/loose'"),
    ({"sign_networks": "10.0.0.0/33"}, "sign_networks: '10.0.0.0/33'"),
    ({"sign_headers": "Subject, To"}, "sign_headers must include From"),
    ({"min_key_bits": 512}, "min_key_bits"),
])
def test_config_errors(plugin, make_posternd, make_fault_backend, options, error):
    be = make_fault_backend()
    d = make_posternd("smtp:" + be.address, start=False)
    px.write_conf_d(d, "72-dkim.conf", px.plugin_section("dkim", path=plugin("dkim"),
                                                         **options))
    d.write_config()
    r = px.run_check(d.binary, d.conf)
    assert r.returncode != 0, r
    assert error in r.stdout + r.stderr, r.stdout + r.stderr


@pytest.mark.parametrize("entry,error", [
    ("example.org:rsa:{sign-rsa}:ed25519-sha256", "is an RSA key"),
    ("example.org:ed:{sign-ed}:rsa-sha256", "is an Ed25519 key"),
    ("example.org:small:{r512}", "an RSA key of 512 bits; at least min_key_bits (1024)"),
])
def test_signing_key_checked(plugin, make_posternd, make_fault_backend, keys, entry, error):
    """The key's type must match the algorithm named, and an RSA signing
    key must be at least min_key_bits: refused at configure, not at the
    first message."""
    be = make_fault_backend()
    d = make_posternd("smtp:" + be.address, start=False)
    entry = entry.format(**{k: v.path for k, v in keys.items()})
    px.write_conf_d(d, "72-dkim.conf", px.plugin_section(
        "dkim", path=plugin("dkim"), sign=True, sign_keys=entry))
    d.write_config()
    r = px.run_check(d.binary, d.conf)
    assert r.returncode != 0, r
    assert error in r.stdout + r.stderr, r.stdout + r.stderr


def xclient_send(port, msg, sender, attrs):
    """A trusted front end (xclient_sources) speaks for a client, then sends."""
    with px.SmtpClient(port) as c:
        c.greeting()
        c.ehlo("frontend.test")
        assert c.cmd("XCLIENT " + attrs).code == 220
        assert c.ehlo("frontend.test").code == 250
        assert c.cmd("MAIL FROM:<%s>" % sender).code == 250
        assert c.cmd("RCPT TO:<user@example.test>").code == 250
        _, final = c.data(msg)
        assert final.code == 250, final
        c.quit()


def test_sign_for_authenticated_client(plugin, make_posternd, make_fault_backend, dns, keys):
    """An authenticated client (here an XCLIENT LOGIN from a trusted front
    end) from outside sign_networks is signed; the same client without a
    login is not."""
    be = make_fault_backend()
    d = dkim_daemon(plugin, make_posternd, be, dns,
                    extra_settings={"xclient_sources": ["127.0.0.1/32"]}, sign=True,
                    sign_keys="example.org:rsa:%s" % keys["sign-rsa"].path,
                    sign_networks="192.0.2.0/24")
    xclient_send(d.port, dt.message(sender="hank@example.org"), "hank@example.org",
                 "ADDR=198.51.100.7 LOGIN=hank")
    xclient_send(d.port, dt.message(sender="ivy@example.org"), "ivy@example.org",
                 "ADDR=198.51.100.8")
    got = px.wait_until(lambda: len(be.accepted) >= 2 and be.accepted, px.DELIVERY_WAIT,
                        "two messages at the backend")
    by = {a["mail_from"]: a["data"] for a in got}
    sigs = [v for n, v in px.header_fields(by["hank@example.org"])
            if n.lower() == "dkim-signature"]
    assert len(sigs) == 1 and "d=example.org" in sigs[0], by["hank@example.org"][:1500]
    assert dt.dkimpy_verify(by["hank@example.org"], records_for(keys))
    assert not [1 for n, _ in px.header_fields(by["ivy@example.org"])
                if n.lower() == "dkim-signature"]
    assert d.grep(r"plugin=dkim sign d=example.org s=rsa a=rsa-sha256 client=auth")


def test_dns_budget_bounds_hanging_lookups(plugin, make_posternd, make_fault_backend, keys):
    """Four signatures whose key servers never answer: each lookup is cut
    at timeouts.dns, and once dns_budget has passed no new lookup starts;
    every signature is a temperror and the message is not held for
    4 x timeouts.dns."""
    s = DNSServer(records_for(keys),
                  hang=["s%d.hang._domainkey.example.net" % i for i in range(4)])
    s.start()
    try:
        be = make_fault_backend()
        d = dkim_daemon(plugin, make_posternd, be, s, extra_settings={
            "timeouts": {"dns": "1s"}}, dns_budget="1500ms", timeout="20s")
        m = dt.message()
        for i in range(4):
            m = dt.sign(m, keys["r2048"], "s%d.hang" % i)
        t0 = time.monotonic()
        got, raw = results(deliver(d, be, m, "hang@example.net"))
        took = time.monotonic() - t0
        want = [("temperror", "key lookup failed")] * 4
        assert [(r, reason) for r, reason, _ in got] == want, raw
        assert took < 3.5, took
        assert len(d.grep(r"plugin=dkim dns name=s\d.hang._domainkey.example.net "
                          r"skipped=yes reason=dns_budget")) == 2, d.log()[-3000:]
    finally:
        s.stop()


def test_postern_test_same_results(plugin, make_posternd, make_fault_backend, dns, postern_bin):
    """`postern test` runs the same plugin, resolver and policy offline:
    the same dkim results in the same Authentication-Results."""
    be = make_fault_backend()
    d = dkim_daemon(plugin, make_posternd, be, dns)
    msg = dt.rfc8463_message()
    data = deliver(d, be, msg, "offline@football.example.com")
    online, _ = results(data)
    t = px.postern_test(postern_bin, d.conf, msg, "offline@football.example.com",
                        ["user@example.test"])
    assert t.returncode == 0, t
    ar = [h for h in t.headers if h.startswith("Authentication-Results:")]
    assert len(ar) == 1, t
    offline, _ = dt.authres_of(ar[0].encode() + b"\r\n\r\n", OURS)
    assert offline == online and [r for r, _, _ in offline] == ["pass", "pass"], (offline, t)
