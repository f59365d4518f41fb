"""dkimtest: keys, DNS records, signed messages and Authentication-Results
parsing for the DKIM plugin's end-to-end tests (test_v_dkim.py).

Keys are made here with openssl (RSA 512/1024/2048, Ed25519); messages are
signed with python3-dkim (dkimpy), an implementation independent of
libopendkim; Authentication-Results are parsed with python3-authres. The
RFC 8463 example (a message signed with an Ed25519 and an RSA key, and
both keys) comes from python3-dkim's own test data.
"""

import base64
import os
import re
import subprocess
import time

import authres
import dkim

import pxtest as px

DKIMPY_DATA = os.path.join(os.path.dirname(dkim.__file__), "tests", "data")

# RFC 8463 appendix A: the Ed25519 key of selector brisbane, and the RSA
# key (selector test) python3-dkim publishes for the same message.
RFC8463_MSG = os.path.join(DKIMPY_DATA, "rfc6376.signed.msg")
RFC8463_RECORDS = {
    "brisbane._domainkey.football.example.com":
        "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
}
RFC8463_RSA_RECORD_FILE = os.path.join(DKIMPY_DATA, "test.txt")


def rfc8463_records():
    """The example's key records, as DNSServer wants them."""
    r = dict(RFC8463_RECORDS)
    with open(RFC8463_RSA_RECORD_FILE) as f:
        r["test._domainkey.football.example.com"] = f.read().strip()
    return {k: [("TXT", v)] for k, v in r.items()}


def rfc8463_message():
    with open(RFC8463_MSG, "rb") as f:
        return px.to_crlf(f.read())


def b_prefixes(message):
    """header.b of each DKIM-Signature (first 8 characters of b=), in order."""
    out = []
    for name, value in px.header_fields(message):
        if name.lower() == "dkim-signature":
            m = re.search(r"(?:^|;)\s*b\s*=\s*([^;]*)", value)
            out.append(re.sub(r"\s+", "", m.group(1))[:8] if m else None)
    return out


# ------------------------------------------------------------------- keys --

def _openssl(*args, data=None):
    r = subprocess.run(["openssl"] + list(args), input=data, capture_output=True, timeout=120)
    if r.returncode != 0:
        raise px.PeerError("openssl %s failed: %s" % (" ".join(args), r.stderr.decode()))
    return r.stdout


class Key:
    """A key pair: pem (PKCS#8, for Postern's sign_keys), dkimpy (what
    dkim.sign takes), record (the DNS TXT value), path (pem on disk)."""

    def __init__(self, kind, pem, dkimpy_key, p, path):
        self.kind = kind
        self.pem = pem
        self.dkimpy = dkimpy_key
        self.p = p
        self.path = path

    @property
    def record(self):
        return "v=DKIM1; k=%s; p=%s" % ("ed25519" if self.kind == "ed25519" else "rsa", self.p)


def make_key(directory, name, kind="rsa", bits=2048):
    """openssl genpkey: an RSA key of `bits`, or an Ed25519 key."""
    path = os.path.join(str(directory), name + ".pem")
    if kind == "ed25519":
        pem = _openssl("genpkey", "-algorithm", "ed25519")
        der_priv = _openssl("pkey", "-outform", "DER", data=pem)
        der_pub = _openssl("pkey", "-pubout", "-outform", "DER", data=pem)
        dkimpy_key = base64.b64encode(der_priv[-32:])       # the raw seed
        p = base64.b64encode(der_pub[-32:]).decode()        # RFC 8463: the raw key
    else:
        pem = _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt",
                       "rsa_keygen_bits:%d" % bits)
        dkimpy_key = _openssl("rsa", "-traditional", data=pem)   # PKCS#1 for dkimpy
        p = base64.b64encode(_openssl("pkey", "-pubout", "-outform", "DER",
                                      data=pem)).decode()
    with open(path, "wb") as f:
        f.write(pem)
    os.chmod(path, 0o640)
    return Key(kind, pem, dkimpy_key, p, path)


# --------------------------------------------------------------- messages --

def message(sender="alice@example.net", subject="DKIM test", body=None, msgid=None):
    """A small CRLF message From sender."""
    msgid = msgid or "<%d.%d@example.net>" % (os.getpid(), time.monotonic_ns())
    body = body or b"Hello,\r\n\r\nthis message is signed.\r\n.a line with a dot\r\n"
    return (b"From: Alice <" + sender.encode() + b">\r\n"
            b"To: Bob <user@example.test>\r\n"
            b"Subject: " + subject.encode() + b"\r\n"
            b"Date: Sun, 01 Jan 2023 00:00:00 +0000\r\n"
            b"Message-ID: " + msgid.encode() + b"\r\n"
            b"MIME-Version: 1.0\r\n\r\n" + body)


def sign(msg, key, selector, domain="example.net", algorithm=None,
         canonicalize=(b"relaxed", b"simple")):
    """dkimpy: msg with one more DKIM-Signature on top."""
    alg = algorithm or ("ed25519-sha256" if key.kind == "ed25519" else "rsa-sha256")
    sig = dkim.sign(msg, selector.encode(), domain.encode(), key.dkimpy,
                    canonicalize=canonicalize, signature_algorithm=alg.encode(),
                    include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
    return sig + msg


def dkimpy_verify(msg, records, index=0):
    """dkim.verify of the index-th signature, keys from records
    ({name: [("TXT", value)]}); (ok, the verifier's log text)."""
    def dnsfunc(name, timeout=5):
        n = name.decode() if isinstance(name, bytes) else name
        for k, v in records.items():
            if k.rstrip(".").lower() == n.rstrip(".").lower():
                return v[0][1].encode()
        return None
    d = dkim.DKIM(msg)
    ok = d.verify(idx=index, dnsfunc=dnsfunc)
    return ok


# ---------------------------------------------------- Authentication-Results --

def authres_of(msg_bytes, authserv_id):
    """The Authentication-Results field with our authserv-id, parsed; the
    message's DKIM results as [(result, reason, {prop: value})]."""
    fields = [v for n, v in px.header_fields(msg_bytes)
              if n.lower() == "authentication-results"]
    ours = [v for v in fields if v.split(";", 1)[0].strip().lower() == authserv_id.lower()]
    assert len(ours) == 1, "want one Authentication-Results for %s, got %r" % (authserv_id,
                                                                               fields)
    ar = authres.AuthenticationResultsHeader.parse("Authentication-Results: " + ours[0])
    out = []
    for r in ar.results:
        if r.method != "dkim":
            continue
        props = {"%s.%s" % (p.type, p.name): p.value for p in r.properties}
        out.append((r.result, r.reason, props))
    return out, ours[0]
