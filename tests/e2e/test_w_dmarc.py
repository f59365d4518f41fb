"""w. DMARC (issue 9): plugins/dmarc behind a real chain, with its DNS from
the test DNS server (dnsserver.py) through Postern's resolver.

The matrix runs through `postern test` (the same chain, policy and header
code as posternd, one process per case): the recorder plugin ahead of
dmarc records the SPF and DKIM results of each case (a real plugin in the
chain, as spf and dkim would be); dmarc judges them. Each case checks the
dmarc result and its properties in the Authentication-Results header
(parsed by python3-authres), the dmarc-policy result, and the action the
policy rules of conf.d/80-dmarc.conf give.

Then posternd with a backend: a reject at the end of DATA (550 5.7.1, the
backend never sees the message), a quarantine (delivered, marked), monitor
mode (delivered, "monitor would=reject" logged), a per-domain override, the
report log, and the A-R the backend receives. And the shipped conf.d
example, uncommented, loads."""

import os
import re

import pytest

import dmarctest as dm
import pxtest as px
from dnsserver import DNSServer

SPF = "spf=%s smtp.mailfrom=%s"
DKIM = "dkim=%s header.d=%s header.s=s1"

# (id, From fields, recorded results, dmarc result, header.from, policy.dmarc,
#  dmarc-policy result, action, extra -o, envelope sender)
CASES = [
    # alignment, relaxed (example.com: p=reject sp=quarantine)
    ("dkim-exact-pass", ["<a@example.com>"], [DKIM % ("pass", "example.com")],
     "pass", "example.com", "reject", None, "accept"),
    ("dkim-relaxed-sub-pass", ["<a@example.com>"], [DKIM % ("pass", "mail.example.com")],
     "pass", "example.com", "reject", None, "accept"),
    ("spf-relaxed-sub-pass", ["<a@example.com>"], [SPF % ("pass", "bounce@bounces.example.com")],
     "pass", "example.com", "reject", None, "accept"),
    ("spf-exact-pass", ["<a@example.com>"], [SPF % ("pass", "example.com")],
     "pass", "example.com", "reject", None, "accept"),
    ("unaligned-reject", ["<a@example.com>"],
     [SPF % ("pass", "example.org"), DKIM % ("pass", "example.org")],
     "fail", "example.com", "reject", "reject", "reject"),
    ("aligned-dkim-fails", ["<a@example.com>"], [DKIM % ("fail", "example.com")],
     "fail", "example.com", "reject", "reject", "reject"),
    ("aligned-spf-softfail", ["<a@example.com>"], [SPF % ("softfail", "example.com")],
     "fail", "example.com", "reject", "reject", "reject"),
    ("no-auth-at-all", ["<a@example.com>"], [],
     "fail", "example.com", "reject", "reject", "reject"),
    ("dkim-fail-aligned-pass-unaligned", ["<a@example.com>"],
     [DKIM % ("fail", "example.com"), DKIM % ("pass", "example.org")],
     "fail", "example.com", "reject", "reject", "reject"),
    ("second-dkim-aligned-pass", ["<a@example.com>"],
     [DKIM % ("pass", "example.org"), DKIM % ("pass", "example.com")],
     "pass", "example.com", "reject", None, "accept"),
    ("case-insensitive", ["User <USER@Example.COM>"], [DKIM % ("pass", "EXAMPLE.com")],
     "pass", "example.com", "reject", None, "accept"),
    # strict (example.net: adkim=s aspf=s): libopendmarc 1.4.2 passes these
    ("strict-dkim-sub-fails", ["<a@example.net>"], [DKIM % ("pass", "mail.example.net")],
     "fail", "example.net", "reject", "reject", "reject"),
    ("strict-spf-sub-fails", ["<a@example.net>"], [SPF % ("pass", "bounces.example.net")],
     "fail", "example.net", "reject", "reject", "reject"),
    ("strict-dkim-exact-pass", ["<a@example.net>"], [DKIM % ("pass", "example.net")],
     "pass", "example.net", "reject", None, "accept"),
    ("strict-from-sub-dkim-org", ["<a@news.example.net>"], [DKIM % ("pass", "example.net")],
     "fail", "news.example.net", "reject", "reject", "reject"),
    # organisational-domain fallback, sp
    ("fallback-relaxed-pass", ["<a@news.example.com>"], [DKIM % ("pass", "example.com")],
     "pass", "news.example.com", "quarantine", None, "accept"),
    ("fallback-sp-quarantine", ["<a@news.example.com>"], [SPF % ("pass", "example.org")],
     "fail", "news.example.com", "quarantine", "quarantine", "quarantine"),
    ("fallback-deep-sub-sp", ["<a@a.b.example.com>"], [],
     "fail", "a.b.example.com", "quarantine", "quarantine", "quarantine"),
    ("fallback-no-sp-uses-p", ["<a@news.example.net>"], [],
     "fail", "news.example.net", "reject", "reject", "reject"),
    ("own-record-p-none", ["<a@monitor.example.com>"], [],
     "fail", "monitor.example.com", "none", "none", "accept"),
    ("own-record-p-quarantine", ["<a@quar.example.com>"], [],
     "fail", "quar.example.com", "quarantine", "quarantine", "quarantine"),
    ("record-among-other-txt", ["<a@quar2.example.com>"], [],
     "fail", "quar2.example.com", "quarantine", "quarantine", "quarantine"),
    # public suffixes: libopendmarc 1.4.2 aligns d=co.uk with victim.co.uk
    ("psl-dkim-suffix-not-aligned", ["<ceo@victim.co.uk>"], [DKIM % ("pass", "co.uk")],
     "fail", "victim.co.uk", "reject", "reject", "reject"),
    ("psl-spf-suffix-not-aligned", ["<ceo@victim.co.uk>"], [SPF % ("pass", "co.uk")],
     "fail", "victim.co.uk", "reject", "reject", "reject"),
    ("psl-sibling-not-aligned", ["<ceo@victim.co.uk>"], [DKIM % ("pass", "attacker.co.uk")],
     "fail", "victim.co.uk", "reject", "reject", "reject"),
    ("psl-own-sub-aligned", ["<ceo@victim.co.uk>"], [DKIM % ("pass", "mail.victim.co.uk")],
     "pass", "victim.co.uk", "reject", None, "accept"),
    # pct (applied by us: the library ignores it)
    ("pct0-reject-becomes-quarantine", ["<a@pct0.example.com>"], [],
     "fail", "pct0.example.com", "reject", "quarantine", "quarantine"),
    ("pct100-reject", ["<a@pct100.example.com>"], [],
     "fail", "pct100.example.com", "reject", "reject", "reject"),
    ("pct50-drawn-in", ["<a@pct50.example.com>"], [],
     "fail", "pct50.example.com", "quarantine", "quarantine", "quarantine",
     ["dmarc.pct_draw=49"]),
    ("pct50-drawn-out", ["<a@pct50.example.com>"], [],
     "fail", "pct50.example.com", "quarantine", "none", "accept", ["dmarc.pct_draw=50"]),
    # no record, bad or several records
    ("no-record", ["<a@example.org>"], [SPF % ("pass", "example.org")],
     "none", "example.org", None, None, "accept"),
    ("no-record-sub-and-org", ["<a@news.example.org>"], [],
     "none", "news.example.org", None, None, "accept"),
    ("invalid-record", ["<a@bad.example.com>"], [],
     "permerror", "bad.example.com", None, None, "reject"),
    ("two-records", ["<a@two.example.com>"], [],
     "none", "two.example.com", None, None, "accept"),
    # the From field
    ("several-from-fields", ["<a@example.com>", "<b@example.com>"],
     [DKIM % ("pass", "example.com")], "permerror", None, None, None, "reject"),
    ("one-from-two-domains", ["<a@example.com>, <b@example.org>"],
     [DKIM % ("pass", "example.com")], "permerror", None, None, None, "reject"),
    ("one-from-two-mailboxes-one-domain", ["a <a@example.com>, b@example.com"],
     [DKIM % ("pass", "example.com")], "pass", "example.com", "reject", None, "accept"),
    ("no-from", [], [DKIM % ("pass", "example.com")],
     "permerror", None, None, None, "reject"),
    ("display-name-with-at", ['"boss@example.org" (the boss) <ceo@example.com>'],
     [DKIM % ("pass", "example.org")], "fail", "example.com", "reject", "reject", "reject"),
    ("group-syntax", ["team: <a@example.com>;"], [DKIM % ("pass", "example.com")],
     "pass", "example.com", "reject", None, "accept"),
    ("no-domain-in-from", ["undisclosed"], [], "permerror", None, None, None, "reject"),
    # DNS failures
    ("dns-servfail", ["<a@broken.example.com>"], [DKIM % ("pass", "example.org")],
     "temperror", "broken.example.com", None, None, "tempfail"),
    ("dns-timeout", ["<a@slow.example.com>"], [],
     "temperror", "slow.example.com", None, None, "tempfail"),
    # the null sender: SPF's HELO identity counts
    ("null-sender-helo-spf", ["<a@example.com>"], ["spf=pass smtp.helo=mail.example.com"],
     "pass", "example.com", "reject", None, "accept", [], ""),
]


def case_params():
    for c in CASES:
        c = list(c) + [[], "sender@client.example"][len(c) - 8:]
        yield pytest.param(*c, id=c[0])


@pytest.fixture(scope="module")
def dns():
    with DNSServer(dm.RECORDS, servfail=dm.SERVFAIL, hang=dm.HANG) as s:
        yield s


@pytest.fixture
def matrix_conf(plugin, make_posternd, dns):
    d = make_posternd("smtp:127.0.0.1:25", start=False, settings=dm.settings(dns))
    for name, text in dm.conf_files(plugin).items():
        px.write_conf_d(d, name, text)
    d.write_config()
    return d.conf


@pytest.mark.parametrize("cid,froms,results,result,hfrom,policy,disp,action,extra,sender",
                         list(case_params()))
def test_matrix(cid, froms, results, result, hfrom, policy, disp, action, extra, sender,
                matrix_conf, postern_bin):
    ov = list(extra)
    if results:
        ov.append("recorder.results=" + ", ".join(results))
    t = px.postern_test(postern_bin, matrix_conf, dm.message(froms, subject=cid), sender,
                        ["user@example.test"], client_ip="192.0.2.25",
                        helo="mail.example.com", overrides=ov)
    assert t.action == action, t
    assert t.returncode == px.POSTERN_TEST_EXIT[action], t
    got = [p for p in t.plugins if p.get("plugin") == "dmarc"]
    assert got and got[0]["stage"] == "data-end", t
    words = got[0].get("results", "").split()
    assert ("dmarc=" + result) in words, t
    assert [w for w in words if w.startswith("dmarc-policy=")] == \
        (["dmarc-policy=" + disp] if disp else []), t
    if action in ("reject", "tempfail"):
        code = "451 4.4.3" if result == "temperror" else "550 5.7.1"
        assert t.reply.startswith(code), t
        # nothing is added to a refused message: see its A-R in monitor mode
        t = px.postern_test(postern_bin, matrix_conf, dm.message(froms, subject=cid), sender,
                            ["user@example.test"], client_ip="192.0.2.25",
                            helo="mail.example.com", overrides=ov + ["policy.monitor=true"])
        assert t.action == "accept", t
    ar = dm.authres_of(dm.ar_value(t.headers))
    assert ar.authserv_id == dm.AUTHSERV
    methods = [r.method for r in ar.results]
    assert methods == sorted(methods, key=["spf", "dkim", "dmarc"].index), methods
    (res, props, reason), = dm.dmarc_results(ar)
    assert res == result, t
    assert props.get("header.from") == hfrom, (props, t)
    assert props.get("policy.dmarc") == policy, (props, t)
    if result in ("permerror", "temperror"):
        assert reason, t


def test_matrix_size():
    assert len(CASES) >= 30
    assert {c[7] for c in CASES} == {"accept", "reject", "quarantine", "tempfail"}


# ------------------------------------------------------- through posternd ---

def daemon(plugin, make_posternd, sink, dns, results, extra=None, options=None, rules=dm.RULES,
           files=None):
    f = dm.conf_files(plugin, dmarc_options=options, results=results)
    f.update(files or {})
    return px.posternd_with_conf_d(make_posternd, "smtp:" + sink.address, f,
                                   settings=dm.settings(dns, extra, rules))


def send(d, froms, sender, subject):
    return px.send_message(d.port, dm.message(froms, subject=subject), mail_from=sender)


def test_reject_at_end_of_data(plugin, make_posternd, sink, dns, workdir):
    log = str(workdir / "dmarc.jsonl")
    d = daemon(plugin, make_posternd, sink, dns,
               ["spf=pass smtp.mailfrom=example.org", DKIM % ("pass", "example.org")],
               options={"report_log": log})
    res = send(d, ["Boss <ceo@example.com>"], "rej@example.org", "reject")
    assert res["final"].code == 550, res
    assert res["final"].first.startswith("550 5.7.1 "), res
    assert "DMARC policy of example.com" in res["final"].first, res
    assert sink.wait_for(1, mail_from="rej@example.org", timeout=2) == []
    assert d.wait_log(r"plugin=dmarc result=fail from=example.com record=_dmarc.example.com "
                      r"policy=reject disposition=reject")
    rep, = dm.report_lines(log)
    assert rep["header_from"] == "example.com" and rep["policy_domain"] == "example.com"
    assert rep["result"] == "fail" and rep["policy"] == "reject"
    assert rep["disposition"] == "reject" and rep["sampled"] is True
    assert rep["rua"] == ["mailto:agg@example.com"]
    assert rep["alignment"] == {"dkim": "fail", "spf": "fail"}
    assert rep["spf"] == {"domain": "example.org", "scope": "mfrom", "result": "pass",
                          "aligned": False}
    assert rep["dkim"] == [{"domain": "example.org", "selector": "s1", "result": "pass",
                            "aligned": False}]
    assert rep["source_ip"] == "127.0.0.1" and rep["envelope_from"] == "example.org"
    assert re.match(r"^[0-9a-f]{16}$", rep["session"])


def test_pass_reaches_backend_with_authres(plugin, make_posternd, sink, dns, workdir):
    log = str(workdir / "dmarc.jsonl")
    d = daemon(plugin, make_posternd, sink, dns,
               [SPF % ("pass", "bounces.example.com"), DKIM % ("pass", "example.com")],
               options={"report_log": log})
    res = send(d, ["<a@example.com>"], "ok@bounces.example.com", "pass")
    assert res["final"].code == 250, res
    msg, = sink.wait_for(1, mail_from="ok@bounces.example.com")
    values = [v for n, v in px.header_fields(msg.content)
              if n.lower() == "authentication-results"]
    assert len(values) == 1, values
    ar = dm.authres_of(values[0])
    assert ar.authserv_id == dm.AUTHSERV
    assert [(r.method, r.result) for r in ar.results] == \
        [("spf", "pass"), ("dkim", "pass"), ("dmarc", "pass")], values
    (res_, props, _), = dm.dmarc_results(ar)
    assert props == {"header.from": "example.com", "policy.dmarc": "reject"}
    rep, = dm.report_lines(log)
    assert rep["result"] == "pass" and rep["alignment"] == {"dkim": "pass", "spf": "pass"}
    assert rep["spf"]["aligned"] is True and rep["dkim"][0]["aligned"] is True


def test_quarantine_delivers_marked(plugin, make_posternd, sink, dns):
    d = daemon(plugin, make_posternd, sink, dns, [SPF % ("pass", "example.org")])
    res = send(d, ["<a@news.example.com>"], "q@example.org", "quarantine")
    assert res["final"].code == 250, res
    msg, = sink.wait_for(1, mail_from="q@example.org")
    q = msg.header("X-Postern-Quarantine")
    assert q and q[0].split()[0] == "yes", msg.content[:600]
    ar = dm.authres_of([v for n, v in px.header_fields(msg.content)
                        if n.lower() == "authentication-results"][0])
    (r, props, _), = dm.dmarc_results(ar)
    assert r == "fail" and props["policy.dmarc"] == "quarantine"


def test_monitor_mode_delivers_and_logs(plugin, make_posternd, sink, dns):
    d = daemon(plugin, make_posternd, sink, dns, [SPF % ("pass", "example.org")],
               extra={"policy": {"monitor": True}})
    res = send(d, ["<a@example.com>"], "mon@example.org", "monitor")
    assert res["final"].code == 250, res
    msg, = sink.wait_for(1, mail_from="mon@example.org")
    assert not msg.header("X-Postern-Quarantine")
    assert d.wait_log(r"monitor would=reject plugin=dmarc stage=data-end "
                      r"reply=\"550 5.7\.1 Message refused: the DMARC policy of example\.com")


def test_plugin_monitor_and_temperror_tempfail(plugin, make_posternd, sink, dns):
    """A DNS failure defers the message (451, the sender retries); the
    plugin's own monitor = yes turns even that into a log line."""
    d = daemon(plugin, make_posternd, sink, dns, [])
    res = send(d, ["<a@broken.example.com>"], "tf@example.org", "temperror")
    assert res["final"].code == 451 and "4.4.3" in res["final"].first, res
    d2 = daemon(plugin, make_posternd, sink, dns, [], options={"monitor": True})
    res = send(d2, ["<a@broken.example.com>"], "tfm@example.org", "temperror-monitor")
    assert res["final"].code == 250, res
    assert d2.wait_log(r"monitor would=tempfail plugin=dmarc")


def test_per_domain_override(plugin, make_posternd, sink, dns):
    """An override for one sender domain files instead of refusing."""
    over = ('override "lists" {\n    sender_domains = {"lists.example.org"}\n'
            '    actions = {"dmarc-policy=reject quarantine"}\n}\n')
    d = daemon(plugin, make_posternd, sink, dns, [SPF % ("pass", "lists.example.org")],
               files={"90-override.conf": over})
    res = send(d, ["<a@example.com>"], "list@lists.example.org", "override")
    assert res["final"].code == 250, res
    msg, = sink.wait_for(1, mail_from="list@lists.example.org")
    assert msg.header("X-Postern-Quarantine")
    res = send(d, ["<a@example.com>"], "other@example.org", "no-override")
    assert res["final"].code == 550, res


def test_forged_authres_is_not_trusted(plugin, make_posternd, sink, dns):
    """An incoming A-R claiming dkim=pass for the From domain counts for
    nothing: DMARC reads only the results of the chain."""
    d = daemon(plugin, make_posternd, sink, dns, [])
    forged = ["Authentication-Results: %s; dkim=pass header.d=example.com" % dm.AUTHSERV,
              "Authentication-Results: elsewhere.example; dmarc=pass header.from=example.com"]
    res = px.send_message(d.port, dm.message(["<a@example.com>"], subject="forged",
                                             extra=forged), mail_from="f@example.org")
    assert res["final"].code == 550, res


def test_shipped_example_loads(plugin, postern_bin, make_posternd, dns, workdir):
    """conf.d/80-dmarc.conf, uncommented (report_log and path adjusted),
    is a configuration `postern check` accepts."""
    src = os.path.join(px.top_srcdir(), "conf.d", "80-dmarc.conf")
    text = "".join(l[1:] if l.startswith("#") and not l.startswith("# ")
                   and l.strip() != "#" else ("" if l.startswith("#") else l)
                   for l in open(src))
    text = text.replace("/var/lib/postern/dmarc-report.jsonl", str(workdir / "r.jsonl"))
    text = text.replace('plugin "dmarc" {', 'plugin "dmarc" {\n    path = "%s"'
                        % plugin("dmarc"))
    d = make_posternd("smtp:127.0.0.1:25", start=False,
                      settings={"dns_forward": [dns.addr]})
    px.write_conf_d(d, "80-dmarc.conf", text)
    d.write_config()
    c = px.run_postern_check(postern_bin, d.conf)
    assert c.returncode == 0, (text, c.stdout, c.stderr)
    assert "dmarc" in c.stdout


# ------------------------------------------- with the real spf and dkim ---

@pytest.fixture
def real_chain(plugin, make_posternd, workdir):
    """spf -> dkim -> dmarc, the real plugins, their DNS from one server:
    example.com signs with selector sel and sends from bounces.example.com;
    co.uk (a public suffix) signs and passes SPF too."""
    import dkimtest
    key = dkimtest.make_key(workdir, "sel", bits=1024)
    records = dict(dm.RECORDS)
    records.update({
        "bounces.example.com": [("TXT", "v=spf1 ip4:192.0.2.0/24 -all")],
        "co.uk": [("TXT", "v=spf1 ip4:192.0.2.0/24 -all")],
        "sel._domainkey.example.com": [("TXT", key.record)],
        "sel._domainkey.co.uk": [("TXT", key.record)],
    })
    with DNSServer(records) as dns:
        d = make_posternd("smtp:127.0.0.1:25", start=False, settings=dm.settings(dns))
        px.write_conf_d(d, "40-spf.conf", px.plugin_section("spf", path=plugin("spf")))
        px.write_conf_d(d, "50-dkim.conf", px.plugin_section("dkim", path=plugin("dkim")))
        px.write_conf_d(d, "80-dmarc.conf", px.plugin_section("dmarc", path=plugin("dmarc")))
        d.write_config()
        yield d.conf, key, dkimtest


@pytest.mark.parametrize("case", ["aligned-pass", "public-suffix-signer"])
def test_real_spf_dkim(case, real_chain, postern_bin):
    conf, key, dkimtest = real_chain
    if case == "aligned-pass":
        from_, domain, sender = "alice@example.com", "example.com", "b@bounces.example.com"
    else:
        from_, domain, sender = "ceo@victim.co.uk", "co.uk", "x@co.uk"
    msg = dkimtest.sign(dkimtest.message(sender=from_, subject=case), key, "sel", domain=domain)
    t = px.postern_test(postern_bin, conf, msg, sender, ["user@example.test"],
                        client_ip="192.0.2.25", helo="mail.example.com",
                        overrides=["policy.monitor=true"])
    assert t.action == "accept", t
    ar = dm.authres_of(dm.ar_value(t.headers))
    got = [(r.method, r.result) for r in ar.results]
    if case == "aligned-pass":
        assert got == [("spf", "pass"), ("dkim", "pass"), ("dmarc", "pass")], t
    else:
        # both pass, for co.uk; neither aligns with victim.co.uk
        assert got == [("spf", "pass"), ("dkim", "pass"), ("dmarc", "fail")], t
        t = px.postern_test(postern_bin, conf, msg, sender, ["user@example.test"],
                            client_ip="192.0.2.25", helo="mail.example.com")
        assert t.action == "reject" and t.reply.startswith("550 5.7.1 "), t
    (_, props, _), = dm.dmarc_results(ar)
    assert props == {"header.from": from_.split("@")[1], "policy.dmarc": "reject"}, props
