"""Helpers for the DMARC tests (test_w_dmarc.py): the test zone, the chain
(recorder ahead of dmarc, as a real spf/dkim pair would be), the policy
rules the shipped conf.d/80-dmarc.conf suggests, messages with chosen From
fields, and Authentication-Results read with python3-authres.

The zone (served by dnsserver.DNSServer on 127.0.0.1, a free port):

  _dmarc.example.com        p=reject; sp=quarantine; rua=...   (relaxed)
  _dmarc.example.net        p=reject; adkim=s; aspf=s          (strict, no sp)
  example.org               no record at all
  _dmarc.monitor.example.com p=none      (a subdomain's own record)
  _dmarc.quar.example.com   p=quarantine
  _dmarc.pct0/pct100.example.com   p=reject; pct=0 / pct=100
  _dmarc.pct50.example.com  p=quarantine; pct=50
  _dmarc.bad.example.com    p=bogus      (libopendmarc refuses it)
  _dmarc.two.example.com    two v=DMARC1 records
  _dmarc.victim.co.uk       p=reject     (co.uk is a public suffix)
  _dmarc.broken.example.com SERVFAIL;  _dmarc.slow.example.com never answers
"""

import json
import os

import authres

import pxtest as px

AUTHSERV = "mx.example.test"

RECORDS = {
    "_dmarc.example.com": [("TXT", "v=DMARC1; p=reject; sp=quarantine; "
                                   "rua=mailto:agg@example.com")],
    "_dmarc.example.net": [("TXT", "v=DMARC1; p=reject; adkim=s; aspf=s")],
    "www.example.org": [("A", "192.0.2.80")],
    "_dmarc.monitor.example.com": [("TXT", "v=DMARC1; p=none")],
    "_dmarc.quar.example.com": [("TXT", "v=DMARC1; p=quarantine")],
    "_dmarc.pct0.example.com": [("TXT", "v=DMARC1; p=reject; pct=0")],
    "_dmarc.pct100.example.com": [("TXT", "v=DMARC1; p=reject; pct=100")],
    "_dmarc.pct50.example.com": [("TXT", "v=DMARC1; p=quarantine; pct=50")],
    "_dmarc.bad.example.com": [("TXT", "v=DMARC1; p=bogus")],
    "_dmarc.two.example.com": [("TXT", "v=DMARC1; p=reject"), ("TXT", "v=DMARC1; p=none")],
    "_dmarc.victim.co.uk": [("TXT", "v=DMARC1; p=reject")],
    # not DMARC: a TXT beside the record must not count
    "_dmarc.quar2.example.com": [("TXT", "some other text"),
                                 ("TXT", ["v=DMARC1; ", "p=quarantine"])],
}
SERVFAIL = ["_dmarc.broken.example.com"]
HANG = ["_dmarc.slow.example.com"]

# What conf.d/80-dmarc.conf suggests, uncommented
RULES = ["dmarc-policy=reject reject", "dmarc-policy=quarantine quarantine",
         "dmarc=temperror tempfail", "dmarc=permerror reject"]


def settings(dns, extra=None, rules=RULES):
    s = {"dns_forward": [dns.addr], "timeouts": {"dns": "1s"},
         "policy": {"authserv_id": AUTHSERV, "actions": list(rules)}}
    for k, v in (extra or {}).items():
        s[k] = dict(s.get(k, {}), **v) if isinstance(v, dict) else v
    return s


def conf_files(plugin, dmarc_options=None, results=None):
    """40-recorder.conf (SPF/DKIM results to judge) and 80-dmarc.conf."""
    rec = {"results": results} if results else {}
    return {
        "40-recorder.conf": px.plugin_section("recorder", path=plugin("recorder"), **rec),
        "80-dmarc.conf": px.plugin_section("dmarc", path=plugin("dmarc"),
                                           **(dmarc_options or {})),
    }


def message(froms, subject="dmarc", extra=()):
    """A message whose From fields are froms (a list of values; [] = none)."""
    h = [("From: " + f).encode() for f in froms]
    h += [b"To: <user@example.test>", ("Subject: " + subject).encode(),
          ("Message-ID: <%s.%d@client.example>" % (subject, os.getpid())).encode(),
          b"Date: Sun, 01 Jan 2023 00:00:00 +0000"]
    h += [x.encode() for x in extra]
    return b"\r\n".join(h) + b"\r\n\r\nDMARC test body.\r\n"


def authres_of(value):
    """python3-authres's parse of an A-R value (a ValueError if it is not
    RFC 8601)."""
    return authres.AuthenticationResultsHeader.parse(
        "Authentication-Results: " + value.strip())


def ar_value(headers):
    """Our A-R value from "Name: value" strings (postern test's headers)."""
    ours = [h.split(":", 1)[1] for h in headers
            if h.lower().startswith("authentication-results:")]
    assert len(ours) == 1, headers
    return ours[0]


def dmarc_results(ar):
    """[(result, {ptype.property: value}, reason)] of the dmarc method."""
    out = []
    for r in ar.results:
        if r.method == "dmarc":
            out.append((r.result, {"%s.%s" % (p.type, p.name): p.value
                                   for p in r.properties}, r.reason))
    return out


def report_lines(path):
    try:
        with open(path) as f:
            return [json.loads(l) for l in f if l.strip()]
    except FileNotFoundError:
        return []
