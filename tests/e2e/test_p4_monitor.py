"""p4. Monitor mode (issue 4, must-show 4): everything is evaluated and
logged ("monitor would=reject plugin=... reply=..."), nothing is rejected
or deferred; globally (policy.monitor), per plugin (monitor = yes in its
section) and from the command line."""

import re

import pytest

import pxtest as px

REFUSED = "550 5.7.1 Message refused by the example plugin"


def bad_message():
    return px.make_message(subject="monitor", extra_headers=["X-Postern-Test: reject"])


def example(plugin, **kw):
    opts = {"path": plugin("example"), "reject_senders": ["spammer@bad.test"]}
    opts.update(kw)
    return px.plugin_section("example", **opts)


def would(d, verdict, plugin_name, reply, n=1):
    pat = (r"^posternd\[\d+\]: [0-9a-f]{16} monitor would=%s plugin=%s(?: [\w.-]+=\S+)* "
           r"reply=\"%s\"") % (verdict, plugin_name, re.escape(reply))
    lines = d.wait_log(pat, n=n)
    assert len(lines) >= n, "no log line %r in:\n%s" % (pat, d.log()[-3000:])
    return lines


@pytest.mark.parametrize("how", ["policy", "override-o"])
def test_global_monitor_delivers_and_logs(how, plugin, sink, make_posternd):
    if how == "policy":
        kw = {"settings": {"policy": {"monitor": True}}}
    else:
        kw = {"overrides": ["policy.monitor=yes"]}
    d = px.posternd_with_conf_d(make_posternd, "smtp:" + sink.address,
                                {"50-example.conf": example(plugin)}, **kw)
    res = px.send_message(d.port, bad_message(), mail_from="mon@client.test")
    assert res["final"].code == 250, res
    msg, = sink.wait_for(1, mail_from="mon@client.test")
    assert msg.header("Subject") == ["monitor"], msg.content[:600]
    lines = would(d, "reject", "example", REFUSED)
    sid = px.LOG_RE.match(lines[0]).group(2)
    assert any(s["sid"] == sid and s.get("status") == "delivered" for s in d.summaries()), \
        "the session that logged would=reject did not deliver"

    # the sender rule at MAIL too
    res = px.send_message(d.port, px.make_message(), mail_from="spammer@bad.test")
    assert res["mail"].code == 250 and res["final"].code == 250, res
    assert len(sink.wait_for(1, mail_from="spammer@bad.test")) == 1
    would(d, "reject", "example", "550 5.7.1 Sender refused by the example plugin")


def test_monitor_covers_tempfail(plugin, sink, make_posternd):
    d = px.posternd_with_conf_d(
        make_posternd, "smtp:" + sink.address,
        {"50-tempfailer.conf": px.plugin_section("tempfailer", path=plugin("tempfailer"))},
        settings={"policy": {"monitor": True}})
    res = px.send_message(d.port, px.make_message(), mail_from="grey@client.test")
    assert res["rcpt"][0].code == 250 and res["final"].code == 250, res
    assert len(sink.wait_for(1, mail_from="grey@client.test")) == 1
    would(d, "tempfail", "tempfailer", "451 4.7.1 greylisted (test)")


def test_monitor_covers_on_error(plugin, sink, make_posternd):
    """A plugin error whose on_error is tempfail is only logged in monitor mode."""
    d = px.posternd_with_conf_d(
        make_posternd, "smtp:" + sink.address,
        {"50-badverdict.conf": px.plugin_section("badverdict", path=plugin("badverdict"),
                                                 on_error="tempfail")},
        settings={"policy": {"monitor": True}})
    res = px.send_message(d.port, px.make_message(), mail_from="mon-err@client.test")
    assert res["mail"].code == 250 and res["final"].code == 250, res
    assert d.wait_log(r" plugin name=badverdict stage=mail error=invalid-verdict")
    assert d.wait_log(r" monitor would=tempfail plugin=badverdict")


def test_per_plugin_monitor(plugin, sink, make_posternd):
    """monitor = yes in one plugin's section: that plugin only logs; the
    other plugin still acts."""
    files = {"40-tempfailer.conf": px.plugin_section("tempfailer", path=plugin("tempfailer"),
                                                     monitor=True),
             "50-example.conf": example(plugin)}
    d = px.posternd_with_conf_d(make_posternd, "smtp:" + sink.address, files)
    res = px.send_message(d.port, bad_message(), mail_from="pp@client.test")
    assert res["rcpt"][0].code == 250, res          # tempfailer: monitor
    assert res["final"].first == REFUSED, res       # example: acts
    would(d, "tempfail", "tempfailer", "451 4.7.1 greylisted (test)")
    assert sink.find(mail_from="pp@client.test") == []

    d2 = px.posternd_with_conf_d(make_posternd, "smtp:" + sink.address, files,
                                 overrides=["example.monitor=yes"])
    res = px.send_message(d2.port, bad_message(), mail_from="pp2@client.test")
    assert res["final"].code == 250, res
    assert len(sink.wait_for(1, mail_from="pp2@client.test")) == 1
    would(d2, "reject", "example", REFUSED)


def test_monitor_off_acts_and_logs_no_would(plugin, sink, make_posternd):
    d = px.posternd_with_conf_d(make_posternd, "smtp:" + sink.address,
                                {"50-example.conf": example(plugin)})
    res = px.send_message(d.port, bad_message(), mail_from="act@client.test")
    assert res["final"].first == REFUSED, res
    d.wait_log(r" plugin name=example stage=data-end verdict=reject")
    assert d.grep(r" monitor would=") == []


def test_verdict_headers_in_monitor_mode(plugin, sink, make_posternd):
    """policy.verdict_headers = yes: the delivered message carries one
    X-Postern-Results naming what was found (the policy's results); without
    it, none."""
    d = px.posternd_with_conf_d(make_posternd, "smtp:" + sink.address,
                                {"50-example.conf": example(plugin)},
                                settings={"policy": {"monitor": True, "verdict_headers": True}})
    res = px.send_message(d.port, bad_message(), mail_from="vh@client.test")
    assert res["final"].code == 250, res
    msg, = sink.wait_for(1, mail_from="vh@client.test")
    results = msg.header("X-Postern-Results")
    assert len(results) == 1 and "example=match" in results[0], msg.content[:1000]

    d2 = px.posternd_with_conf_d(make_posternd, "smtp:" + sink.address,
                                 {"50-example.conf": example(plugin)},
                                 settings={"policy": {"monitor": True}})
    res = px.send_message(d2.port, bad_message(), mail_from="novh@client.test")
    msg, = sink.wait_for(1, mail_from="novh@client.test")
    assert msg.header("X-Postern-Results") == [], msg.content[:1000]


def test_incoming_postern_fields_removed(plugin, sink, make_posternd):
    """X-Postern-* fields are Postern's to set: a sender's own (a forged
    quarantine mark, or the example's trigger field) never reach the backend."""
    d = px.posternd_with_conf_d(make_posternd, "smtp:" + sink.address,
                                {"50-example.conf": example(plugin)},
                                settings={"policy": {"monitor": True}})
    msg = px.make_message(extra_headers=["X-Postern-Quarantine: yes", "X-Postern-Test: reject",
                                         "X-Postern-Results: example=pass"])
    res = px.send_message(d.port, msg, mail_from="xpf@client.test")
    assert res["final"].code == 250, res
    got, = sink.wait_for(1, mail_from="xpf@client.test")
    names = [n.lower() for n, _ in px.header_fields(got.content)]
    assert "x-postern-quarantine" not in names and "x-postern-test" not in names, names
    assert "x-postern-results" not in names, names
    assert got.header("X-Postern-Example") == ["checked"]
