"""Helpers for postern-milter's end-to-end tests (test_z1_milter.py,
test_z2_miltertest.py, test_z3_parity.py, bench/milter).

  PosternMilter   postern-milter in the foreground (-f), its log in a
                  file; the same settings as px.Posternd plus milter_socket
                  = inet:PORT@127.0.0.1 (the port it is waited on)
  postfix_milter  a private Postfix (px.PostfixInstance) with smtpd_milters
                  pointing at a milter, milter_default_action = tempfail
  swaks           one swaks session (XCLIENT for the client address, exact
                  message bytes); its replies parsed
  smtp_session    the same with Python (px.SmtpClient), faster, for the
                  parity and benchmark runs
  CHAIN records   the DNS zone and plugin sections of the full chain (SPF,
                  DKIM, DMARC, greylisting, ClamAV) used by the tests
"""

import os
import re
import subprocess

import pxtest as px

AUTHSERV = "mx.test"


def find_milter():
    """postern-milter beside posternd ($POSTERN_MILTER, $POSTERND's folder,
    $TOP_BUILDDIR)."""
    p = os.environ.get("POSTERN_MILTER")
    if p:
        return os.path.abspath(p)
    d = os.environ.get("POSTERND")
    cands = []
    if d:
        cands.append(os.path.join(os.path.dirname(os.path.abspath(d)), "postern-milter"))
    cands.append(os.path.join(px.top_builddir(), "postern-milter"))
    for c in cands:
        if os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    raise px.PeerError("postern-milter not built: looked for %s" % ", ".join(cands))


class PosternMilter(px.Posternd):
    """postern-milter -f -c CONF: listens on inet:PORT@127.0.0.1."""

    def __init__(self, workdir, settings=None, overrides=(), port=None, binary=None):
        port = port or px.free_port()
        s = {"milter_socket": "inet:%d@%s" % (port, px.HOST), "listen": None}
        s.update(settings or {})
        super().__init__(binary or find_milter(), workdir, "smtp:127.0.0.1:25", settings=s,
                         overrides=overrides, port=port)

    @property
    def socket(self):
        return "inet:%d@%s" % (self.port, px.HOST)


def postfix_milter(workdir, sink_port, milter_port, extra=None, **kw):
    """A private Postfix relaying example.test to sink_port, every SMTP
    session filtered by the milter on milter_port (doc/milter-postfix.md)."""
    s = {
        "smtpd_milters": "inet:%s:%d" % (px.HOST, milter_port),
        "milter_default_action": "tempfail",
        "milter_protocol": "6",
        "milter_connect_timeout": "5s",
        "milter_command_timeout": "30s",
        "milter_content_timeout": "60s",
        # the tests give the client's address with XCLIENT (the milter sees it)
        "smtpd_authorized_xclient_hosts": "127.0.0.0/8",
    }
    s.update(extra or {})
    return px.PostfixInstance(workdir, sink_port, relay_domains=("example.test",),
                              extra=s, **kw)


REPLY = re.compile(r"^<(?:-|~|\*\*) +(\d{3})([ -])(.*)$")


class Swaks:
    """One swaks run: rc, output, and the server's replies [(code, text)]
    in order (continuation lines joined with " / ")."""

    def __init__(self, argv, proc):
        self.argv = argv
        self.rc = proc.returncode
        self.output = proc.stdout + proc.stderr
        self.replies = []
        cont = None
        for line in self.output.splitlines():
            m = REPLY.match(line)
            if not m:
                continue
            code, sep, text = int(m.group(1)), m.group(2), m.group(3).strip()
            if cont is not None:
                cont[1] += " / " + text
            else:
                cont = [code, text]
            if sep == " ":
                self.replies.append(tuple(cont))
                cont = None

    def reply_to(self, verb_index):
        return self.replies[verb_index] if verb_index < len(self.replies) else None

    @property
    def final(self):
        """The last reply that is not QUIT's 221."""
        rs = [r for r in self.replies if r[0] != 221]
        return rs[-1] if rs else None

    def __repr__(self):
        return "<swaks rc=%s replies=%r\n%s>" % (self.rc, self.replies, self.output[-3000:])


def swaks(port, mail_from, rcpt, message=None, client_addr=None, helo="client.example",
          timeout=60):
    """swaks to 127.0.0.1:port; XCLIENT ADDR=client_addr first when given;
    the message sent byte for byte (dot-stuffed here)."""
    argv = [px.require("swaks"), "--server", "%s:%d" % (px.HOST, port), "--helo", helo,
            "--from", mail_from, "--to", rcpt, "--timeout", "50"]
    if client_addr:
        argv += ["--xclient-addr", client_addr, "--xclient-name", "[UNAVAILABLE]",
                 "--xclient-optional-strict"]
    tmp = None
    if message is not None:
        import tempfile
        fd, tmp = tempfile.mkstemp(prefix="swaks-", suffix=".eml")
        with os.fdopen(fd, "wb") as f:
            # dot-stuffed CRLF and the final "."; swaks ends it with CRLF
            f.write(px.data_payload(message)[:-2])
        argv += ["--no-data-fixup", "--data", "@" + tmp]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    finally:
        if tmp:
            os.unlink(tmp)
    return Swaks(argv, proc)


def smtp_session(port, mail_from, rcpts, message, client_addr=None, helo="client.example",
                 proxy_v2=False):
    """One transaction with px.SmtpClient: XCLIENT (Postfix) or a PROXY v2
    header (posternd) for the client address. Returns {"mail": reply,
    "rcpts": [replies], "final": reply or None} (the first refusal ends it)."""
    out = {"mail": None, "rcpts": [], "final": None}
    c = px.SmtpClient(port)
    try:
        if proxy_v2:
            import pxtransport as pt
            c.send(pt.proxy_v2(client_addr, "198.51.100.1", 40000, 25))
        g = c.greeting()
        assert g.code == 220, g
        assert c.ehlo(helo).code == 250
        if client_addr and not proxy_v2:
            r = c.cmd("XCLIENT ADDR=%s NAME=[UNAVAILABLE]" % client_addr)
            assert r.code == 220, r
            assert c.ehlo(helo).code == 250
        out["mail"] = r = c.cmd("MAIL FROM:<%s>" % mail_from)
        if r.code != 250:
            out["final"] = r
            return out
        for rc in rcpts:
            out["rcpts"].append(c.cmd("RCPT TO:<%s>" % rc))
        if not any(r.code == 250 for r in out["rcpts"]):
            out["final"] = out["rcpts"][-1]
            return out
        r = c.cmd("DATA")
        if r.code != 354:
            out["final"] = r
            return out
        c.send(px.data_payload(message))
        out["final"] = c.reply()
        return out
    finally:
        try:
            c.quit()
        except Exception:
            c.close()


def ar_values(message, authserv=AUTHSERV):
    """The values of the Authentication-Results fields with our authserv-id."""
    return [v for n, v in px.header_fields(message)
            if n.lower() == "authentication-results" and
            v.split(";", 1)[0].strip().lower() == authserv]


# ------------------------------------------------------------ the chain --
#
# One chain for the milter tests, the parity run and the benchmark: spf,
# dkim (verify; signs for 198.51.100.0/24), greylist (only clients outside
# 192.0.2.0/25), dmarc, clamav (when built), the dmarc rules of
# conf.d/80-dmarc.conf, and a monitor-mode override for monitor.test.

GOOD_IP = "192.0.2.10"          # in every test SPF record's /24
GREY_IP = "192.0.2.200"         # in the /24, outside greylist's allow_networks
OTHER_IP = "203.0.113.9"        # in no SPF record
SIGN_IP = "198.51.100.7"        # DKIM signing network

RULES = ["dmarc-policy=reject reject", "dmarc-policy=quarantine quarantine",
         "dmarc=temperror tempfail", "dmarc=permerror reject"]


def records(key):
    """The zone: key is the dkimtest.Key of s1._domainkey.good.example (and
    s2._domainkey.signed.example, for the signing test)."""
    spf = [("TXT", "v=spf1 ip4:192.0.2.0/24 -all")]
    return {
        "good.example": spf,
        "_dmarc.good.example": [("TXT", "v=DMARC1; p=reject")],
        "s1._domainkey.good.example": [("TXT", key.record)],
        "other.example": spf,
        "example.com": [("TXT", "v=spf1 -all")],
        "_dmarc.example.com": [("TXT", "v=DMARC1; p=reject")],
        "grey.example": spf,
        "quar.example": spf,
        "_dmarc.quar.example": [("TXT", "v=DMARC1; p=quarantine")],
        "none.example": [("TXT", "v=spf1 ~all")],
        "_dmarc.none.example": [("TXT", "v=DMARC1; p=none")],
        "perm.example": [("TXT", "v=spf1 ip4:192.0.2.300 -all")],
        "_dmarc.perm.example": [("TXT", "v=DMARC1; p=reject")],
        "nodmarc.example": spf,
        "signed.example": [("TXT", "v=spf1 ip4:198.51.100.0/24 -all")],
        "_dmarc.signed.example": [("TXT", "v=DMARC1; p=reject")],
        "s2._domainkey.signed.example": [("TXT", key.record)],
    }


SERVFAIL = ["_dmarc.broken.example"]
EXTRA = {"broken.example": [("TXT", "v=spf1 ip4:192.0.2.0/24 -all")]}


def settings(dns, extra=None):
    s = {"hostname": "mx.test", "dns_forward": [dns.addr], "timeouts": {"dns": "1s"},
         "trusted_networks": ["10.255.255.255/32"],
         "relay_domains": ["example.test", "monitor.test"],
         "policy": {"authserv_id": AUTHSERV, "actions": list(RULES)},
         'override "monitored"': {"recipient_domains": ["monitor.test"], "monitor": "yes"}}
    s.update(extra or {})
    return s


def clamav_built():
    try:
        px.find_plugin("clamav")
        return True
    except px.PeerError:
        return False


def chain_files(plugin, key, dbdir=None, clamtmp=None):
    """conf.d files of the chain (chain order = file order)."""
    f = {
        "70-spf.conf": px.plugin_section("spf", path=plugin("spf")),
        "72-dkim.conf": px.plugin_section(
            "dkim", path=plugin("dkim"), sign=True,
            sign_keys="signed.example:s2:%s" % key.path, sign_networks="198.51.100.0/24"),
        "78-greylist.conf": px.plugin_section(
            "greylist", path=plugin("greylist"), delay="1h",
            allow_networks="192.0.2.0/25, 198.51.100.0/24, 127.0.0.0/8"),
        "80-dmarc.conf": px.plugin_section("dmarc", path=plugin("dmarc")),
    }
    if dbdir is not None:
        f["85-clamav.conf"] = px.plugin_section("clamav", path=plugin("clamav"),
                                                database=dbdir, tmpdir=clamtmp)
    return f


def write_conf_d(daemon, files):
    for name, text in files.items():
        px.write_conf_d(daemon, name, text)
