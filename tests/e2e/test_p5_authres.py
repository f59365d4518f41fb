"""p5. Authentication-Results (RFC 8601), issue 4 must-show 5: every
incoming Authentication-Results whose authserv-id is ours (any case, with
or without a version, folded or not) is gone at the backend; one with
another authserv-id stays, byte for byte; ours is added exactly once, just
below Postern's Received header, with the results in a fixed order."""

import re

import pxtest as px

OURS = "mx.example.test"

FORGED = [
    b"Authentication-Results: mx.example.test; spf=pass smtp.mailfrom=forged.test",
    b"Authentication-Results: MX.Example.TEST;\r\n\tdkim=pass header.d=forged.test",
    b"Authentication-Results: mx.example.test 1; dmarc=pass header.from=forged.test",
    b"Authentication-Results:mx.example.test;none",
]
KEPT = [
    b"Authentication-Results: other.example; dkim=pass header.d=x.test",
    b"Authentication-Results: mx.example.test.evil; spf=pass smtp.mailfrom=y.test",
    b"X-Authentication-Results: mx.example.test; spf=pass",
]


def forged_message():
    h = [b"From: Sender <sender@client.test>", FORGED[0], KEPT[0], b"To: user@example.test",
         FORGED[1], b"Subject: forged A-R", KEPT[1], FORGED[2], KEPT[2], FORGED[3],
         b"Message-ID: <ar@client.test>"]
    body = b"Authentication-Results: mx.example.test; in the body, not a header\r\n"
    return b"\r\n".join(h) + b"\r\n\r\n" + body


def ar_fields(msg):
    return [v for n, v in px.header_fields(msg.content) if n.lower() == "authentication-results"]


def authserv_id(value):
    m = re.match(r"\s*(?:\([^)]*\)\s*)*([^\s;()]+)", value)
    return m.group(1) if m else None


def check_forged_gone(msg, ours):
    ids = [authserv_id(v) for v in ar_fields(msg)]
    assert [i.lower() for i in ids].count(ours.lower()) == 1, \
        "want exactly one A-R for %s, got %r" % (ours, ar_fields(msg))
    content = msg.content
    for f in FORGED:
        assert px.normalise(f) not in content, "forged field still there: %r" % f
    # fields with another authserv-id stay, unchanged
    for f in KEPT:
        assert px.normalise(f) + b"\n" in content, "field %r was touched" % f
    # the body is not a header
    assert content.endswith(b"\nAuthentication-Results: mx.example.test; in the body, "
                            b"not a header\n"), content[-200:]


def ours_below_received(msg, ours):
    """The field right after Postern's Received is ours; returns its value."""
    rec, rest = px.pop_header_field(msg.content)
    px.parse_postern_received(rec)
    ar, _ = px.pop_header_field(rest)
    name, _, value = ar.decode().partition(":")
    assert name == "Authentication-Results", "field below Received is %r" % ar
    value = re.sub(r"\s+", " ", value.replace("\n", "")).strip()
    assert authserv_id(value) == ours, value
    return value


def with_example(plugin, make_posternd, sink, **kw):
    """posternd with one plugin in the chain (the example, adding nothing):
    with no plugin at all Postern is a plain proxy and adds no A-R."""
    return px.posternd_with_conf_d(
        make_posternd, "smtp:" + sink.address,
        {"50-example.conf": px.plugin_section("example", path=plugin("example"),
                                              add_header=False)}, **kw)


def test_forged_removed_others_kept_ours_once(plugin, sink, make_posternd):
    d = with_example(plugin, make_posternd, sink, settings={"policy": {"authserv_id": OURS}})
    res = px.send_message(d.port, forged_message(), mail_from="ar@client.test")
    assert res["final"].code == 250, res
    msg, = sink.wait_for(1, mail_from="ar@client.test")
    check_forged_gone(msg, OURS)
    assert ours_below_received(msg, OURS) == OURS + "; none"


def test_authserv_id_defaults_to_hostname(plugin, sink, make_posternd):
    d = with_example(plugin, make_posternd, sink, hostname="mx.example.test")
    res = px.send_message(d.port, forged_message(), mail_from="ar-host@client.test")
    assert res["final"].code == 250, res
    msg, = sink.wait_for(1, mail_from="ar-host@client.test")
    check_forged_gone(msg, "mx.example.test")


def test_no_plugin_forged_still_removed(sink, make_posternd):
    """With an empty chain Postern adds no A-R of its own, but one that
    claims to be ours is still removed (RFC 8601 section 5)."""
    d = make_posternd("smtp:" + sink.address, settings={"policy": {"authserv_id": OURS}})
    res = px.send_message(d.port, forged_message(), mail_from="ar-none@client.test")
    assert res["final"].code == 250, res
    msg, = sink.wait_for(1, mail_from="ar-none@client.test")
    assert [authserv_id(v) for v in ar_fields(msg)] == ["other.example", "mx.example.test.evil"], \
        ar_fields(msg)
    for f in FORGED:
        assert px.normalise(f) not in msg.content, f


def test_results_in_fixed_order(plugin, sink, make_posternd):
    """Results recorded by plugins, in any order, come out in the fixed
    method order (spf, dkim, dmarc, iprev, auth, arc); methods that are not
    registered (example, foo) are left out."""
    rec = px.plugin_section("recorder", path=plugin("recorder"), results=[
        "dmarc=fail header.from=z.test", "foo=bar", "dkim=pass header.d=a.test",
        "spf=softfail smtp.mailfrom=b.test", "iprev=pass policy.iprev=127.0.0.1"])
    d = px.posternd_with_conf_d(
        make_posternd, "smtp:" + sink.address,
        {"40-recorder.conf": rec,
         "50-example.conf": px.plugin_section("example", path=plugin("example"))},
        settings={"policy": {"authserv_id": OURS}})
    res = px.send_message(d.port, forged_message(), mail_from="ar-order@client.test")
    assert res["final"].code == 250, res
    msg, = sink.wait_for(1, mail_from="ar-order@client.test")
    check_forged_gone(msg, OURS)
    ours = [v for v in ar_fields(msg) if authserv_id(v) == OURS][0]
    methods = re.findall(r";\s*([a-z-]+)=", ours)
    assert methods == ["spf", "dkim", "dmarc", "iprev"], ours
    for want in ("spf=softfail smtp.mailfrom=b.test", "dkim=pass header.d=a.test",
                 "dmarc=fail header.from=z.test", "iprev=pass policy.iprev=127.0.0.1"):
        assert want in ours, (want, ours)
    assert "foo=" not in ours and "example=" not in ours, ours


def test_results_do_not_leak_between_transactions(plugin, sink, make_posternd):
    """Two messages in one session: A-R state does not leak from the first
    transaction (recorded results) into the second."""
    rec = px.plugin_section("recorder", path=plugin("recorder"),
                            results=["spf=pass smtp.mailfrom=client.test"])
    d = px.posternd_with_conf_d(make_posternd, "smtp:" + sink.address,
                                {"40-recorder.conf": rec},
                                settings={"policy": {"authserv_id": OURS}})
    with px.SmtpClient(d.port) as c:
        c.greeting()
        c.ehlo()
        for i in range(2):
            assert c.cmd("MAIL FROM:<leak%d@client.test>" % i).code == 250
            assert c.cmd("RCPT TO:<user@example.test>").code == 250
            assert c.data(px.make_message())[1].code == 250
        c.quit()
    got = sink.wait_all(["leak0@client.test", "leak1@client.test"])
    for s in ("leak0@client.test", "leak1@client.test"):
        msg, = got[s]
        assert ar_fields(msg) == [OURS + "; spf=pass smtp.mailfrom=client.test"], ar_fields(msg)
