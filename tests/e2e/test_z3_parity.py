"""z3. One chain, one verdict (invariant 5; issue 12, must-show 4).

The same messages and envelopes, through three front ends of the same
configuration (pxmilter: SPF, DKIM, greylisting, DMARC, ClamAV, the DMARC
rules, monitor mode for monitor.test):

  posternd                  a PROXY v2 listener gives it the client address
  Postfix + postern-milter  XCLIENT gives Postfix (and the milter) the address
  postern test              --client-ip

Each case must give the same verdict (accept, reject, tempfail, discard,
quarantine), at the same stage's reply code, and, for a message that goes
on, the same Authentication-Results (read from the delivered message, from
Postfix's hold queue for a quarantined one, and from postern test's
output). Each path has its own store, so greylisting sees each triplet for
the first time on each.
"""

import os
import re
import subprocess
import time

import pytest

import clamtest as ct
import dkimtest as dk
import pxmilter as pm
import pxtest as px
from dnsserver import DNSServer

G, GREY, OTHER, SIGN = pm.GOOD_IP, pm.GREY_IP, pm.OTHER_IP, pm.SIGN_IP


def msg(frm, subject, body=None, extra=()):
    h = ["From: %s" % f for f in ([frm] if isinstance(frm, str) else frm)]
    h += ["To: <user@example.test>", "Subject: " + subject,
          "Message-ID: <%s@client.example>" % subject, "Date: Sun, 01 Jan 2023 00:00:00 +0000"]
    h += list(extra)
    return ("\r\n".join(h) + "\r\n\r\n").encode() + (body or b"Parity test body.\r\n")


def signed(key, frm, subject, tamper=False):
    m = dk.sign(msg(frm, subject), key, "s1", domain="good.example")
    return m.replace(b"Parity test body.", b"Parity test b0dy.") if tamper else m


# (id, client ip, helo, envelope sender domain (None: <>), rcpt, message(key))
CASES = [
    ("spf-pass-dmarc-pass", G, "mail.good.example", "good.example", "user@example.test",
     lambda k: msg("<a@good.example>", "p1")),
    ("dkim-pass-aligned", G, "mail.good.example", "other.example", "user@example.test",
     lambda k: signed(k, "<a@good.example>", "p2")),
    ("dkim-fail-spf-aligned", G, "mail.good.example", "good.example", "user@example.test",
     lambda k: signed(k, "<a@good.example>", "p3", tamper=True)),
    ("dkim-fail-unaligned-reject", G, "mail.good.example", "other.example", "user@example.test",
     lambda k: signed(k, "<a@good.example>", "p4", tamper=True)),
    ("forged-from-reject", G, "mail.good.example", "other.example", "user@example.test",
     lambda k: msg("<ceo@example.com>", "p5")),
    ("spf-fail-at-mail", OTHER, "helo.example", "good.example", "user@example.test",
     lambda k: msg("<a@good.example>", "p6")),
    ("spf-softfail-p-none", G, "mail.none.example", "none.example", "user@example.test",
     lambda k: msg("<a@none.example>", "p7")),
    ("spf-permerror", G, "mail.perm.example", "perm.example", "user@example.test",
     lambda k: msg("<a@perm.example>", "p8")),
    ("dmarc-quarantine", G, "mail.good.example", "good.example", "user@example.test",
     lambda k: msg("<a@quar.example>", "p9")),
    ("dmarc-temperror", G, "mail.broken.example", "broken.example", "user@example.test",
     lambda k: msg("<a@broken.example>", "p10")),
    ("greylisted", GREY, "mail.grey.example", "grey.example", "user@example.test",
     lambda k: msg("<a@grey.example>", "p11")),
    ("virus", G, "mail.good.example", "good.example", "user@example.test",
     lambda k: msg("<a@good.example>", "p12", body=ct.EICAR + b"\r\n")),
    ("monitor-forged-from", G, "mail.good.example", "other.example", "user@monitor.test",
     lambda k: msg("<ceo@example.com>", "p13")),
    ("monitor-virus", G, "mail.good.example", "good.example", "user@monitor.test",
     lambda k: msg("<a@good.example>", "p14", body=ct.EICAR + b"\r\n")),
    ("monitor-greylist", GREY, "mail.grey.example", "grey.example", "user@monitor.test",
     lambda k: msg("<a@grey.example>", "p15")),
    ("null-sender-helo", G, "good.example", None, "user@example.test",
     lambda k: msg("<a@good.example>", "p16")),
    ("no-dmarc-record", G, "mail.good.example", "nodmarc.example", "user@example.test",
     lambda k: msg("<a@nodmarc.example>", "p17")),
    ("no-records-at-all", OTHER, "helo.example", "nowhere.example", "user@example.test",
     lambda k: msg("<a@nowhere.example>", "p18")),
    ("forged-authres-removed", G, "mail.good.example", "good.example", "user@example.test",
     lambda k: msg("<a@good.example>", "p19",
                   extra=["Authentication-Results: mx.test; dmarc=pass (forged)"])),
    ("two-from-fields", G, "mail.good.example", "good.example", "user@example.test",
     lambda k: msg(["<a@good.example>", "<b@good.example>"], "p20")),
    ("no-from-field", G, "mail.good.example", "good.example", "user@example.test",
     lambda k: b"To: <user@example.test>\r\nSubject: p21\r\n\r\nno From.\r\n"),
    ("dkim-signed-by-us", SIGN, "mail.signed.example", "signed.example", "user@example.test",
     lambda k: msg("<a@signed.example>", "p22")),
    ("other-domain-aligned", G, "mail.other.example", "other.example", "user@example.test",
     lambda k: msg("<a@other.example>", "p23")),
]


@pytest.fixture(scope="module")
def paths(tmp_path_factory, posternd_bin, postern_bin):
    top = tmp_path_factory.mktemp("parity")
    px.make_traversable(str(top))
    key = dk.make_key(str(top), "s1")
    dbdir = ct.build_db(os.path.join(str(top), "db"))
    px.make_traversable(dbdir)
    clamtmp = os.path.join(str(top), "clamtmp")
    os.mkdir(clamtmp)
    os.chmod(clamtmp, 0o1777)
    files = pm.chain_files(px.find_plugin, key, dbdir, clamtmp)
    with DNSServer(dict(pm.records(key), **pm.EXTRA), servfail=pm.SERVFAIL) as dns:
        sink = px.SmtpSink(os.path.join(str(top), "sink"))
        sink.start()
        started = []
        try:
            # posternd: a PROXY v2 listener, the same settings and chain
            pport = px.free_port()
            s = pm.settings(dns, {"listen": [],
                                  'listener "edge"': {"address": "%s:%d" % (px.HOST, pport),
                                                      "proxy_protocol": "v2",
                                                      "proxy_sources": ["127.0.0.1/32"]}})
            d = px.Posternd(posternd_bin, os.path.join(str(top), "d"), "smtp:" + sink.address,
                            settings=s, port=pport)
            d.write_config()
            pm.write_conf_d(d, files)
            started.append(d.start())
            m = pm.PosternMilter(os.path.join(str(top), "m"), settings=pm.settings(dns))
            m.write_config()
            pm.write_conf_d(m, files)
            started.append(m.start())
            pf = pm.postfix_milter(os.path.join(str(top), "pf"), sink.port, m.port)
            pf.relay_domains.append("monitor.test")
            pf.start()
            started.append(pf)
            tdir = os.path.join(str(top), "tspool")
            os.mkdir(tdir)
            yield {"key": key, "sink": sink, "d": d, "m": m, "pf": pf, "postern": postern_bin,
                   "tspool": tdir}
        finally:
            for x in reversed(started):
                x.stop()
            sink.stop()


def verdict_of_code(code):
    return "accept" if code // 100 == 2 else "tempfail" if code // 100 == 4 else "reject"


def reply_key(r):
    """CODE ESC of a reply (SmtpReply)."""
    return "%d %s" % (r.code, r.lines[0].split(" ", 1)[0] if r.lines else "")


def authres_of(content):
    v = pm.ar_values(content)
    return v[0] if len(v) == 1 else ("%d fields: %r" % (len(v), v))


def via_posternd(p, case, sender, rcpt, message):
    _, ip, helo, _, _, _ = case
    out = pm.smtp_session(p["d"].port, sender, [rcpt], message, client_addr=ip, helo=helo,
                          proxy_v2=True)
    r = out["final"]
    v = verdict_of_code(r.code)
    ar = None
    if r.code == 250:
        if "discarded" in r.text:
            v = "discard"
        else:
            got, = p["sink"].wait_for(1, rcpt=rcpt)
            v = "quarantine" if got.header("X-Postern-Quarantine") else "accept"
            ar = authres_of(got.content)
    return v, reply_key(r), ar


def held_headers(pf, queue_id):
    r = subprocess.run(["postcat", "-c", pf.confdir, "-h", "-q", queue_id],
                       capture_output=True, timeout=30)
    return r.stdout


def via_milter(p, case, sender, rcpt, message):
    _, ip, helo, _, _, _ = case
    out = pm.smtp_session(p["pf"].port, sender, [rcpt], message, client_addr=ip, helo=helo)
    r = out["final"]
    v = verdict_of_code(r.code)
    ar = None
    if r.code == 250:
        line = p["m"].wait_log(r"milter message .*from=<%s> " % re.escape(sender))
        v = re.search(r"action=(\w+)", line[-1]).group(1)
        if v == "accept":
            got, = p["sink"].wait_for(1, rcpt=rcpt)
            ar = authres_of(got.content)
        elif v == "quarantine":
            qid = re.search(r"queued as (\w+)", r.text).group(1)
            ar = authres_of(held_headers(p["pf"], qid))
    return v, reply_key(r), ar


def via_postern_test(p, case, sender, rcpt, message):
    _, ip, helo, _, _, _ = case
    t = px.postern_test(p["postern"], p["d"].conf, message, sender, [rcpt], client_ip=ip,
                        helo=helo, overrides=["spool_dir=" + p["tspool"]])
    assert t.action, t
    code = int(t.reply.split()[0])
    esc = t.reply.split()[1] if len(t.reply.split()) > 1 else ""
    ar = None
    if t.action in ("accept", "quarantine"):
        ars = [h.split(":", 1)[1].strip() for h in t.headers
               if h.lower().startswith("authentication-results:")]
        ar = ars[0] if len(ars) == 1 else ars
    return t.action, "%d %s" % (code, esc), ar


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_4_same_verdict_and_authres(paths, case):
    cid, ip, helo, dom, rcpt, make = case
    message = make(paths["key"])
    results = {}
    for tag, fn in (("posternd", via_posternd), ("milter", via_milter),
                    ("postern-test", via_postern_test)):
        sender = "" if dom is None else "%s-%s-%d@%s" % (cid, tag, os.getpid(), dom)
        local, at, rdom = rcpt.partition("@")
        tagged = "%s-%s-%s@%s" % (local, cid, tag, rdom)    # how the sink finds it
        results[tag] = fn(paths, case, sender, tagged, message)
    print(cid, results)
    verdicts = {k: v[0] for k, v in results.items()}
    assert len(set(verdicts.values())) == 1, results
    if verdicts["posternd"] in ("accept", "quarantine"):
        ars = {k: v[2] for k, v in results.items()}
        assert len(set(ars.values())) == 1, ars
        assert ars["posternd"].startswith(pm.AUTHSERV + ";"), ars
    else:
        assert len({v[1] for v in results.values()}) == 1, results
