"""w3. The DMARC matrix against an oracle (issue 9, must-show line 3).

Every case of test_w_dmarc.py's matrix (From fields, the SPF and DKIM
results the recorder plugin records, the zone of dmarctest.py served by
the test DNS server) is judged twice: by plugins/dmarc through `postern
test`, and by npm mailauth@4.13.3 (tests/e2e/dmarc-oracle.js, its resolver
pointed at the same DNS server). The DMARC result and the policy the
domain publishes (policy.dmarc; mailauth's `policy`) must agree, except
for the cases in DISAGREEMENTS: each names what each side says, and the
reason, which doc/plugins/dmarc.md ("Against mailauth") explains under
the same key. A disagreement not listed fails, and so does a listed one
that stops happening.

mailauth is installed by npm from the registry (contrib/quickstart
installs Debian's nodejs and npm) into BUILDDIR/tests/e2e/oracle-node,
once; without node or npm, or when the install fails, the test skips and
says why."""

import json
import os
import re
import shutil
import subprocess

import pytest

import dmarctest as dm
import pxtest as px
from dnsserver import DNSServer
from test_w_dmarc import CASES

MAILAUTH = "mailauth@4.13.3"
HERE = os.path.dirname(os.path.abspath(__file__))

# case id -> (ours (result, policy), mailauth's (result, policy), reason key
# in doc/plugins/dmarc.md). A result None: mailauth gives no DMARC result.
DISAGREEMENTS = {
    "strict-dkim-sub-fails": (("fail", "reject"), ("pass", "reject"), "strict"),
    "strict-spf-sub-fails": (("fail", "reject"), ("pass", "reject"), "strict"),
    "strict-from-sub-dkim-org": (("fail", "reject"), ("pass", "reject"), "strict"),
    "invalid-record": (("permerror", None), ("fail", "bogus"), "bad-p"),
    "two-records": (("none", None), ("fail", "quarantine"), "several-records"),
    "several-from-fields": (("permerror", None), (None, None), "from"),
    "one-from-two-domains": (("permerror", None), (None, None), "from"),
    "one-from-two-mailboxes-one-domain": (("pass", "reject"), (None, None), "from"),
    "no-from": (("permerror", None), (None, None), "from"),
    "no-domain-in-from": (("permerror", None), (None, None), "from"),
    "group-syntax": (("pass", "reject"), (None, None), "from"),
}


def cases():
    for c in CASES:
        c = list(c) + [[], "sender@client.example"][len(c) - 8:]
        yield c


def oracle_inputs(c):
    """What mailauth's authenticate() would hand dmarc(): the domains that
    passed SPF (MAIL FROM's, or HELO's for the null sender) and DKIM."""
    cid, froms, results = c[0], c[1], c[2]
    spf, dkim = [], []
    for r in results:
        kv = px.parse_kv(r)
        if kv.get("spf") == "pass":
            ident = kv.get("smtp.mailfrom") or kv.get("smtp.helo")
            spf.append(ident.split("@")[-1])
        if kv.get("dkim") == "pass":
            dkim.append(kv["header.d"])
    return {"id": cid, "message": dm.message(froms, subject=cid).decode(), "spf": spf,
            "dkim": dkim}


def node_env(prefix):
    env = dict(os.environ)
    env["NODE_PATH"] = os.path.join(prefix, "node_modules")
    return env


def install_mailauth():
    """BUILDDIR/tests/e2e/oracle-node with mailauth; its path, or a reason to skip."""
    node, npm = shutil.which("node") or shutil.which("nodejs"), shutil.which("npm")
    if not node or not npm:
        return None, None, ("node or npm not installed (Debian: nodejs npm; "
                            "contrib/quickstart test installs them)")
    prefix = os.path.join(px.top_builddir(), "tests", "e2e", "oracle-node")
    pkg = os.path.join(prefix, "node_modules", "mailauth", "package.json")
    want = MAILAUTH.split("@")[1]
    try:
        with open(pkg) as f:
            have = json.load(f).get("version")
    except (OSError, ValueError):
        have = None
    if have != want:
        os.makedirs(prefix, exist_ok=True)
        try:
            r = subprocess.run([npm, "install", "--no-save", "--no-audit", "--no-fund",
                                "--no-package-lock", "--prefix", prefix, MAILAUTH],
                               capture_output=True, text=True, timeout=300,
                               stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return None, None, "npm install %s timed out (300 s)" % MAILAUTH
        if r.returncode != 0 or not os.path.isfile(pkg):
            return None, None, ("npm install %s failed (status %d): %s"
                                % (MAILAUTH, r.returncode, (r.stderr or r.stdout)[-600:]))
    return node, prefix, None


@pytest.fixture(scope="module")
def dns():
    with DNSServer(dm.RECORDS, servfail=dm.SERVFAIL, hang=dm.HANG) as s:
        yield s


@pytest.fixture(scope="module")
def oracle(dns):
    """{case id: mailauth's verdict} for every case of the matrix."""
    node, prefix, why = install_mailauth()
    if why:
        pytest.skip("DMARC oracle unavailable: " + why)
    data = {"dns": "127.0.0.1:%d" % dns.port, "timeout_ms": 2000,
            "cases": [oracle_inputs(c) for c in cases()]}
    r = subprocess.run([node, os.path.join(HERE, "dmarc-oracle.js")], input=json.dumps(data),
                       capture_output=True, text=True, timeout=240, env=node_env(prefix))
    assert r.returncode == 0, (r.stdout, r.stderr)
    out = [json.loads(l) for l in r.stdout.splitlines() if l.strip()]
    assert [o["id"] for o in out] == [c[0] for c in cases()], r.stdout
    return {o["id"]: o for o in out}


@pytest.fixture(scope="module")
def matrix_conf(dns, tmp_path_factory):
    d = tmp_path_factory.mktemp("oracle")
    px.make_traversable(str(d))
    p = px.Posternd("/nonexistent", d, "smtp:127.0.0.1:25", settings=dm.settings(dns))
    for name, text in dm.conf_files(lambda n: px.find_plugin(n)).items():
        px.write_conf_d(p, name, text)
    p.write_config()
    return p.conf


def ours(c, conf, postern_bin):
    """(dmarc result, policy.dmarc) of plugins/dmarc for case c."""
    cid, froms, results, extra, sender = c[0], c[1], c[2], c[8], c[9]
    ov = list(extra) + ["policy.monitor=true"]
    if results:
        ov.append("recorder.results=" + ", ".join(results))
    t = px.postern_test(postern_bin, conf, dm.message(froms, subject=cid), sender,
                        ["user@example.test"], client_ip="192.0.2.25",
                        helo="mail.example.com", overrides=ov)
    assert t.action == "accept", t
    (res, props, _), = dm.dmarc_results(dm.authres_of(dm.ar_value(t.headers)))
    return res, props.get("policy.dmarc")


@pytest.mark.parametrize("case", list(cases()), ids=[c[0] for c in cases()])
def test_agrees_with_mailauth(case, oracle, matrix_conf, postern_bin):
    cid = case[0]
    mine = ours(case, matrix_conf, postern_bin)
    o = oracle[cid]
    theirs = (o["result"], o["policy"])
    # our own verdict is the matrix's hand-written one
    assert mine == (case[3], case[5]), (mine, case)
    if cid in DISAGREEMENTS:
        want_mine, want_theirs, key = DISAGREEMENTS[cid]
        assert (mine, theirs) == (want_mine, want_theirs), \
            "listed disagreement changed: ours %r, mailauth %r (%r)" % (mine, theirs, o)
    else:
        assert mine == theirs, "unexplained disagreement: ours %r, mailauth %r (%r)" % (
            mine, theirs, o)


def test_every_disagreement_is_explained():
    """Each key names a paragraph of doc/plugins/dmarc.md's "Against
    mailauth" section, which lists the case ids it explains."""
    doc = open(os.path.join(px.top_srcdir(), "doc", "plugins", "dmarc.md")).read()
    section = doc.split("## Against mailauth", 1)
    assert len(section) == 2, "doc/plugins/dmarc.md has no 'Against mailauth' section"
    text = section[1].split("\n## ", 1)[0]
    ids = {c[0] for c in cases()}
    for cid, (_, _, key) in DISAGREEMENTS.items():
        assert cid in ids, cid
        assert re.search(r"\*\*%s\*\*" % re.escape(key), text), key
        assert "`%s`" % cid in text, cid
