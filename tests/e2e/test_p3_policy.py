"""p3. Policy, end to end with a backend (issue 4, must-show 3): policy
actions per result, overrides per recipient domain, recipient, sender
domain and client network; allow and deny lists (networks, senders,
recipients); and the 452 4.5.3 split of a transaction whose recipients have
different policies. Each case checks what the client is told and what
reaches smtp-sink.

The chain is the example plugin: a message with "X-Postern-Test: reject"
is refused (example=match), every message it checks gets
"X-Postern-Example: checked" (so its absence shows the chain was
skipped), and senders in reject_senders are refused at MAIL."""

import pytest

import pxtest as px

DOMAINS = ["example.test", "other.test", "partner.test"]
REFUSED = "550 5.7.1 Message refused by the example plugin"


def bad_message(tag="x"):
    return px.make_message(subject="policy " + tag, extra_headers=["X-Postern-Test: reject"])


@pytest.fixture
def start(plugin, sink, make_posternd):
    """start(settings) -> posternd with the example plugin (conf.d) in front
    of smtp-sink; relay_domains: example.test other.test partner.test."""
    def go(settings=None, overrides=(), **example_opts):
        s = {"relay_domains": DOMAINS}
        s.update(settings or {})
        opts = {"path": plugin("example"), "reject_senders": ["spammer@bad.test"]}
        opts.update(example_opts)
        return px.posternd_with_conf_d(
            make_posternd, "smtp:" + sink.address,
            {"50-example.conf": px.plugin_section("example", **opts)},
            settings=s, overrides=overrides)
    return go


def transaction(c, sender, rcpts, message):
    """MAIL, RCPTs, DATA on an open session: (mail, [rcpt replies], final)."""
    m = c.cmd("MAIL FROM:<%s>" % sender)
    rs = [c.cmd("RCPT TO:<%s>" % r) for r in rcpts] if m.code == 250 else []
    final = None
    if any(r.code == 250 for r in rs):
        final = c.data(message)[1]
    else:
        c.cmd("RSET")
    return m, rs, final


def session(port, transactions, helo="client.test"):
    """Several transactions in one session; returns their results."""
    out = []
    with px.SmtpClient(port) as c:
        g = c.greeting()
        assert g.code == 220, g
        c.ehlo(helo)
        for sender, rcpts, message in transactions:
            out.append(transaction(c, sender, rcpts, message))
        c.quit()
    return out


def only(sink, sender, n=1):
    got = sink.wait_for(n, mail_from=sender)
    assert len(got) == n, "expected %d message(s) from %s at the backend, got %r" % (
        n, sender, got)
    return got


def checked(msg):
    return msg.header("X-Postern-Example") == ["checked"]


# ---- policy.actions -----------------------------------------------------------

@pytest.mark.parametrize("action,code", [("tempfail", 451), ("reject", 550)])
def test_policy_action_overrides_plugin_verdict(action, code, start, sink):
    d = start({"policy": {"actions": ["example=match %s" % action]}})
    (m, rs, final), = session(d.port, [("act@client.test", ["user@example.test"],
                                        bad_message())])
    assert final.code == code, final
    assert sink.find(mail_from="act@client.test") == []


def test_policy_action_ignore_delivers(start, sink):
    d = start({"policy": {"actions": ["example=match ignore"]}})
    (m, rs, final), = session(d.port, [("ign@client.test", ["user@example.test"],
                                        bad_message())])
    assert final.code == 250, final
    msg, = only(sink, "ign@client.test")
    assert checked(msg)


def test_policy_action_discard(start, sink):
    d = start({"policy": {"actions": ["example=match discard"]}})
    (m, rs, final), = session(d.port, [("disc@client.test", ["user@example.test"],
                                        bad_message()),
                                       ("kept@client.test", ["user@example.test"],
                                        px.make_message())])[:1]
    assert final.code == 250, final
    only(sink, "kept@client.test")
    assert sink.find(mail_from="disc@client.test") == [], "a discarded message was delivered"


def test_policy_action_quarantine(start, sink):
    d = start({"policy": {"actions": ["example=match quarantine"]}})
    (m, rs, final), = session(d.port, [("quar@client.test", ["user@example.test"],
                                        bad_message())])
    assert final.code == 250, final
    msg, = only(sink, "quar@client.test")
    q = msg.header("X-Postern-Quarantine")     # "yes (PLUGIN)"
    assert len(q) == 1 and q[0].split()[0] == "yes", msg.content[:800]


def test_policy_action_on_pass(start, sink):
    """An action keyed on another result of the same plugin."""
    d = start({"policy": {"actions": ["example=pass tempfail"]}})
    r = session(d.port, [("p1@client.test", ["user@example.test"], px.make_message()),
                         ("p2@client.test", ["user@example.test"], bad_message())])
    assert r[0][2].code == 451, r[0]
    assert r[1][2].first == REFUSED, r[1]


# ---- overrides ----------------------------------------------------------------

def test_override_recipient_domain_skip(start, sink):
    d = start({'override "lenient"': {"recipient_domains": ["other.test"],
                                      "skip": ["example"]}})
    r = session(d.port, [("rd1@client.test", ["user@example.test"], bad_message()),
                         ("rd2@client.test", ["user@other.test"], bad_message())])
    assert r[0][2].first == REFUSED, r[0]
    assert r[1][2].code == 250, r[1]
    msg, = only(sink, "rd2@client.test")
    assert msg.rcpts == ["user@other.test"]
    assert not checked(msg), "the skipped plugin still ran"
    assert sink.find(mail_from="rd1@client.test") == []


def test_override_recipient_actions_beat_policy_actions(start, sink):
    d = start({"policy": {"actions": ["example=match tempfail"]},
               'override "vip"': {"recipients": ["vip@example.test"],
                                  "actions": ["example=match ignore"]}})
    r = session(d.port, [("ra1@client.test", ["user@example.test"], bad_message()),
                         ("ra2@client.test", ["vip@example.test"], bad_message())])
    assert r[0][2].code == 451, r[0]
    assert r[1][2].code == 250, r[1]
    msg, = only(sink, "ra2@client.test")
    assert msg.rcpts == ["vip@example.test"] and checked(msg)


def test_override_sender_domain_monitor(start, sink):
    d = start({'override "partners"': {"sender_domains": ["partner.test"], "monitor": True}})
    r = session(d.port, [("a@partner.test", ["user@example.test"], bad_message()),
                         ("a@client.test", ["user@example.test"], bad_message())])
    assert r[0][2].code == 250, r[0]
    assert r[1][2].first == REFUSED, r[1]
    only(sink, "a@partner.test")
    assert d.wait_log(r" monitor would=reject plugin=example")


def test_override_client_network(start, sink):
    d = start({'override "loopback"': {"client_networks": ["127.0.0.0/8"],
                                       "actions": ["example=match tempfail"]}})
    (m, rs, final), = session(d.port, [("net@client.test", ["user@example.test"],
                                        bad_message())])
    assert final.code == 451, final


def test_override_not_matching_network(start, sink):
    d = start({'override "elsewhere"': {"client_networks": ["192.0.2.0/24"],
                                        "skip": ["example"]}})
    (m, rs, final), = session(d.port, [("nnet@client.test", ["user@example.test"],
                                        bad_message())])
    assert final.first == REFUSED, final


# ---- allow / deny -------------------------------------------------------------

def test_allow_network_skips_chain(start, sink):
    d = start({"allow": {"networks": ["127.0.0.0/8"]}})
    r = session(d.port, [("spammer@bad.test", ["user@example.test"], bad_message())])
    m, rs, final = r[0]
    assert m.code == 250, m
    assert final.code == 250, final
    msg, = only(sink, "spammer@bad.test")
    assert not checked(msg), "the chain ran for an allowed network"


def test_allow_sender_skips_chain_for_that_transaction(start, sink):
    d = start({"allow": {"senders": ["@partner.test", "boss@client.test"]}})
    r = session(d.port, [("x@partner.test", ["user@example.test"], bad_message()),
                         ("boss@client.test", ["user@example.test"], bad_message()),
                         ("other@client.test", ["user@example.test"], bad_message())])
    assert r[0][2].code == 250 and r[1][2].code == 250, r
    assert r[2][2].first == REFUSED, "the next transaction must run the chain again"
    assert not checked(only(sink, "x@partner.test")[0])
    assert not checked(only(sink, "boss@client.test")[0])
    assert sink.find(mail_from="other@client.test") == []


def test_allow_recipient(start, sink):
    d = start({"allow": {"recipients": ["postmaster@example.test"]}})
    r = session(d.port, [("ar1@client.test", ["postmaster@example.test"], bad_message()),
                         ("ar2@client.test", ["user@example.test"], bad_message())])
    assert r[0][2].code == 250, r[0]
    assert r[1][2].first == REFUSED, r[1]
    msg, = only(sink, "ar1@client.test")
    assert msg.rcpts == ["postmaster@example.test"]


def test_deny_network_at_connect(start, sink):
    d = start({"deny": {"networks": ["127.0.0.1/32"]}})
    with px.SmtpClient(d.port) as c:
        g = c.greeting()
        c.quit()
    assert g.code == 554 and g.lines[0].startswith("5.7.1"), g


def test_deny_sender_at_mail(start, sink):
    d = start({"deny": {"senders": ["@denied.test", "one@client.test"]}})
    r = session(d.port, [("x@DENIED.test", ["user@example.test"], px.make_message()),
                         ("one@client.test", ["user@example.test"], px.make_message()),
                         ("two@client.test", ["user@example.test"], px.make_message())])
    for m, rs, final in r[:2]:
        assert m.code == 554 and m.lines[0].startswith("5.7.1"), m
    assert r[2][2].code == 250, r[2]
    only(sink, "two@client.test")
    assert len(sink.messages()) == 1


def test_deny_recipient_at_rcpt(start, sink):
    d = start({"deny": {"recipients": ["blocked@example.test"]}})
    (m, rs, final), = session(d.port, [("dr@client.test",
                                        ["blocked@example.test", "user@example.test"],
                                        px.make_message())])
    assert rs[0].code == 554 and rs[0].lines[0].startswith("5.7.1"), rs[0]
    assert rs[1].code == 250, rs[1]
    assert final.code == 250, final
    msg, = only(sink, "dr@client.test")
    assert msg.rcpts == ["user@example.test"]


# ---- the 452 split -------------------------------------------------------------

def test_mixed_policy_transaction_is_split(start, sink):
    """The second recipient's policy (override: skip example) differs from
    the first's: 452 4.5.3, and the client sends it again in a second
    transaction. Each copy gets exactly its recipients' policy."""
    d = start({'override "lenient"': {"recipient_domains": ["other.test"],
                                      "skip": ["example"]}})
    msg = bad_message("split")
    with px.SmtpClient(d.port) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd("MAIL FROM:<split@client.test>").code == 250
        r1 = c.cmd("RCPT TO:<user@example.test>")
        r2 = c.cmd("RCPT TO:<user@other.test>")
        r3 = c.cmd("RCPT TO:<second@example.test>")      # same policy as the first
        f1 = c.data(msg)[1]
        # the client retries the deferred recipient in another transaction
        assert c.cmd("MAIL FROM:<split@client.test>").code == 250
        r4 = c.cmd("RCPT TO:<user@other.test>")
        r5 = c.cmd("RCPT TO:<user@example.test>")        # now the odd one out
        f2 = c.data(msg)[1]
        c.quit()
    assert r1.code == 250 and r3.code == 250, (r1, r3)
    assert r2.first.startswith("452 4.5.3"), r2
    assert r5.first.startswith("452 4.5.3"), r5
    assert r4.code == 250, r4
    assert f1.first == REFUSED, f1
    assert f2.code == 250, f2
    got = only(sink, "split@client.test")
    assert got[0].rcpts == ["user@other.test"], got
    assert not checked(got[0])


def test_split_by_allow_recipient_and_by_override_order(start, sink):
    """An allowed recipient and an ordinary one differ in policy too; the
    first accepted recipient sets the transaction's policy, whichever it
    is."""
    d = start({"allow": {"recipients": ["postmaster@example.test"]}})
    with px.SmtpClient(d.port) as c:
        c.greeting()
        c.ehlo()
        c.cmd("MAIL FROM:<pm@client.test>")
        a = c.cmd("RCPT TO:<postmaster@example.test>")
        b = c.cmd("RCPT TO:<user@example.test>")
        f = c.data(px.make_message())[1]
        c.quit()
    assert a.code == 250 and b.first.startswith("452 4.5.3"), (a, b)
    assert f.code == 250, f
    msg, = only(sink, "pm@client.test")
    assert msg.rcpts == ["postmaster@example.test"] and not checked(msg)


def test_same_policy_recipients_not_split(start, sink):
    d = start({'override "lenient"': {"recipient_domains": ["other.test", "partner.test"],
                                      "skip": ["example"]}})
    (m, rs, final), = session(d.port, [("nosplit@client.test",
                                        ["a@other.test", "b@partner.test", "c@other.test"],
                                        bad_message())])
    assert [r.code for r in rs] == [250, 250, 250], rs
    assert final.code == 250, final
    msg, = only(sink, "nosplit@client.test")
    assert sorted(msg.rcpts) == ["a@other.test", "b@partner.test", "c@other.test"]


def test_refused_recipient_does_not_set_policy(start, sink):
    """A recipient that was refused (deny) is not "the first accepted
    recipient"."""
    d = start({"deny": {"recipients": ["blocked@example.test"]},
               'override "lenient"': {"recipient_domains": ["other.test"],
                                      "skip": ["example"]}})
    (m, rs, final), = session(d.port, [("first@client.test",
                                        ["blocked@example.test", "user@other.test"],
                                        bad_message())])
    assert rs[0].code == 554 and rs[1].code == 250, rs
    assert final.code == 250, final
    assert only(sink, "first@client.test")[0].rcpts == ["user@other.test"]
