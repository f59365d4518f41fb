"""spfsuite: the RFC 7208 SPF test suite (openspf.org release 2014.04, as
Debian's python3-spf ships it) run through Postern's SPF plugin.

For each scenario of rfc7208-tests.yml, a test DNS server (dnsserver.py)
serves the scenario's zonedata; for each test of the scenario, `postern
test` runs the chain (the SPF plugin alone, its lookups through Postern's
resolver forwarding to that server) with the test's client address, HELO
and MAIL FROM, and the result the plugin recorded for the identity that
check_host() evaluates (smtp.mailfrom, or smtp.helo for the null sender)
is compared with the expected result(s). Where a test names an
explanation (other than DEFAULT), the text of the 550 reply must carry it.

Zone data, as the suite's README asks of a driver: an "SPF" record is
served as TXT unless the name has TXT records of its own (type 99 itself
is not served: RFC 7208 dropped it, and the plugin never asks for it);
"TIMEOUT" means the queries for the name's other types are never answered
(the server hangs on them: "spftimeout" has a TXT record and times out
only for type 99; "alltimeout" times out for everything).

Run by tests/e2e/test_u2_spf_suite.py (make check), or alone:

    POSTERND=_build/posternd TOP_BUILDDIR=_build /usr/bin/python3 \\
        tests/e2e/spfsuite.py [-v] [SCENARIO-OR-TEST ...]

It prints one line per deviation and ends with "N passed, N failed".
"""

import gzip
import os
import re
import subprocess
import sys
import tempfile

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from dnslib import AAAA, CLASS, CNAME, MX, PTR, QTYPE, RR, A, DNSLabel, DNSRecord  # noqa: E402

import pxtest as px                    # noqa: E402
from dnsserver import DNSServer        # noqa: E402

SUITE_PATHS = ["/usr/share/doc/python3-spf/rfc7208-tests.yml.gz",
               "/usr/share/doc/python3-spf/rfc7208-tests.yml"]
DNS_TIMEOUT = "700ms"                  # timeouts.dns: what a TIMEOUT name costs
MESSAGE = (b"From: <sender@example.org>\r\nTo: <user@example.test>\r\n"
           b"Subject: spf suite\r\nMessage-ID: <suite@postern.test>\r\n\r\nbody\r\n")
REPLY_PREFIX = re.compile(r"^5\d\d 5\.7\.2[34] SPF: ")


def spf_configured():
    """False when the build was configured --without-spf (autoconfig.h has
    no HAVE_SPF2_SPF_H): the SPF tests then skip, saying so."""
    try:
        with open(os.path.join(px.top_builddir(), "autoconfig.h")) as f:
            return "#define HAVE_SPF2_SPF_H 1" in f.read()
    except OSError:
        return True                     # no autoconfig.h to ask: expect the plugin


def suite_file():
    p = os.environ.get("SPF_SUITE")
    if p:
        return p
    for c in SUITE_PATHS:
        if os.path.isfile(c):
            return c
    raise px.PeerError("rfc7208-tests.yml not found (Debian: python3-spf): looked for %s"
                       % ", ".join(SUITE_PATHS))


def load_suite(path=None):
    """[(scenario description, tests {name: test}, zonedata)]"""
    path = path or suite_file()
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        docs = list(yaml.safe_load_all(f))
    return [(d["description"], d["tests"], d.get("zonedata") or {}) for d in docs]


def _bytes(s):
    """A YAML string as the bytes it escapes (\\xNN is one octet)."""
    if isinstance(s, bytes):
        return s
    try:
        return s.encode("latin-1")
    except UnicodeEncodeError:
        return s.encode("utf-8")


def zone_records(zonedata):
    """(records for DNSServer, hang names) of one scenario's zonedata."""
    records, hang = {}, []
    for name, rrs in zonedata.items():
        out = []
        has_txt = any(isinstance(r, dict) and "TXT" in r for r in rrs)
        for r in rrs:
            if r == "TIMEOUT":
                hang.append(name)
                continue
            (rtype, value), = r.items()
            if rtype == "TXT" and value == "NONE":
                continue                # the driver's "no TXT record here"
            if rtype in ("SPF", "TXT"):
                chunks = value if isinstance(value, list) else [value]
                chunks = [_bytes(c) for c in chunks]
                if rtype == "TXT" or not has_txt:
                    out.append(("TXT", chunks))
            elif rtype == "MX":
                out.append(("MX", (int(value[0]), _fqdn(value[1]))))
            elif rtype in ("PTR", "CNAME"):
                out.append((rtype, _fqdn(value)))
            else:
                out.append((rtype, str(value)))
        records[name] = out
    return records, hang


def _fqdn(host):
    host = str(host)
    return host if host.endswith(".") else host + "."


class SuiteDNS(DNSServer):
    """dnsserver.DNSServer, with records built as dnslib objects rather than
    parsed from zone-file text: the suite has names and targets no zone
    parser takes ("space url-space.example.com", "foo:bar/baz.example.com",
    an MX to the root)."""

    RDATA = {"A": A, "AAAA": AAAA, "PTR": PTR, "CNAME": CNAME}

    def __init__(self, records=None, timeout=(), **kw):
        self.timeout_names = {str(n).lower().rstrip(".") for n in timeout}
        super().__init__(records, **kw)

    def answer(self, data, transport):
        """No answer for a TIMEOUT name's types that have no records."""
        try:
            q = DNSRecord.parse(data).questions[0]
        except Exception:
            return super().answer(data, transport)
        n = str(q.qname).lower().rstrip(".")
        if n in self.timeout_names:
            with self._lock:
                have = [r for r in self._rrs.get(n, []) if r.rtype == q.qtype]
            if not have:
                super().answer(data, transport)     # counted, like any query
                return None
        return super().answer(data, transport)

    def add(self, name, rtype, value, ttl=None):
        if rtype == "TXT":
            return super().add(name, rtype, value, ttl)
        ttl = self.ttl if ttl is None else ttl
        if rtype == "MX":
            rdata = MX(value[1], value[0])
        else:
            rdata = self.RDATA[rtype](value)
        # as the server matches a question: dnslib's text form (\032 for a space)
        n = str(DNSLabel(str(name).rstrip("."))).lower().rstrip(".")
        rr = RR(n + ".", getattr(QTYPE, rtype), CLASS.IN, ttl, rdata)
        with self._lock:
            self._rrs.setdefault(n, []).append(rr)
        return None


def write_conf(workdir, dns_addr):
    """postern.conf + conf.d/73-spf.conf for `postern test`."""
    d = px.Posternd("postern-unused", workdir, "maildir:" + os.path.join(str(workdir), "md"),
                    settings={"dns_forward": [dns_addr],
                              "timeouts": {"dns": DNS_TIMEOUT},
                              "log_level": os.environ.get("SPFSUITE_LOG", "info")})
    d.write_config()
    confd = os.path.join(str(workdir), "conf.d")
    os.makedirs(confd, exist_ok=True)
    with open(os.path.join(confd, "73-spf.conf"), "w") as f:
        f.write(px.plugin_section("spf", path=px.find_plugin("spf"), timeout="20s"))
    return d.conf


def spf_result(out):
    """The first spf result the plugin recorded (postern test's plugin lines
    carry results="spf=R ..."): the identity check_host() evaluates, MAIL
    FROM, or HELO for the null sender (helo_check is off)."""
    for p in out.plugins:
        for t in (p.get("results") or "").split():
            if t.startswith("spf="):
                return t[4:]
    return None


def run_one(postern, conf, t):
    """(got result or None, reply, PosternTest) for one test."""
    mailfrom = t.get("mailfrom", "")
    out = px.postern_test(postern, conf, MESSAGE, mailfrom, ["user@example.test"],
                          client_ip=str(t["host"]), helo=str(t.get("helo", "")), timeout=120)
    return spf_result(out), out.reply, out


def judge(t, got, reply, out=None):
    """None when the test passes, else why not."""
    want = t["result"] if isinstance(t["result"], list) else [t["result"]]
    if got is None and out is not None:
        return "result None, expected %s (postern test exit %s, stderr: %s)" % (
            "|".join(want), out.returncode, out.stderr.strip()[-600:])
    if got not in want:
        return "result %s, expected %s" % (got, "|".join(want))
    exp = t.get("explanation")
    if exp and exp != "DEFAULT" and got == "fail":
        text = REPLY_PREFIX.sub("", reply or "")
        if text != exp:
            return "explanation %r, expected %r" % (text, exp)
    return None


def run_suite(postern, workdir, only=(), verbose=False, log=print):
    """Run every scenario; returns (passed [names], failed {name: why})."""
    passed, failed = [], {}
    for i, (desc, tests, zonedata) in enumerate(load_suite()):
        names = [n for n in tests if not only or n in only or desc in only]
        if not names:
            continue
        records, hang = zone_records(zonedata)
        wd = os.path.join(str(workdir), "scenario%02d" % i)
        os.makedirs(wd, exist_ok=True)
        with SuiteDNS(records, timeout=hang) as dns:
            conf = write_conf(wd, dns.addr)
            for name in names:
                t = tests[name]
                got, reply, out = run_one(postern, conf, t)
                why = judge(t, got, reply, out)
                if why is None:
                    passed.append(name)
                    if verbose:
                        log("ok   %s: %s" % (name, got))
                else:
                    failed[name] = why
                    log("FAIL %s (%s): %s" % (name, desc, why))
                    if verbose:
                        log(out.stdout + out.stderr)
    log("%d passed, %d failed" % (len(passed), len(failed)))
    return passed, failed


def documented_deviations(path):
    """Test names listed in doc/spf-deviations.md (lines "| `name` | ...")."""
    names = set()
    with open(path) as f:
        for line in f:
            m = re.match(r"^\|\s*`([^`]+)`\s*\|", line)
            if m:
                names.add(m.group(1))
    return names


def main(argv):
    verbose = "-v" in argv
    only = [a for a in argv if a != "-v"]
    postern = px.find_postern()
    with tempfile.TemporaryDirectory(prefix="spfsuite.") as wd:
        _, failed = run_suite(postern, wd, only=only, verbose=verbose)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
