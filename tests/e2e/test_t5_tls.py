"""t5. TLS (issue 3, must-show 1): STARTTLS with swaks --tls, openssl
s_client -starttls smtp and posttls-finger; implicit TLS on its listener;
the Received header names the TLS version; plaintext pipelined behind
STARTTLS is discarded; require_tls; certificates chosen by SNI; TLS 1.2 at
least; STARTTLS to the backend. Certificates are made with `openssl req`."""

import os
import subprocess

import pytest

import pxtest as px
import pxtransport as pt


@pytest.fixture
def certs(workdir):
    d = workdir / "certs"
    return {"mx": pt.make_cert(d, "mx.test"), "other": pt.make_cert(d, "other.test")}


def tls_settings(certs, names=("mx",)):
    return {"tls": {"certificate": [certs[n][0] for n in names],
                    "key": [certs[n][1] for n in names]}}


def received_tls(sink, sender):
    got = sink.wait_for(1, mail_from=sender)
    assert len(got) == 1, got
    rec, _ = px.pop_header_field(got[0].content)
    r = px.parse_postern_received(rec)
    assert r["proto"] == "ESMTPS", r
    assert r["tls"] and r["tls"].startswith("TLSv1."), r
    return r


def test_swaks_starttls(sink, make_posternd, certs):
    d = make_posternd("smtp:" + sink.address, settings=tls_settings(certs))
    r = pt.swaks("--server", "127.0.0.1:%d" % d.port, "--tls", "--from", "swaks-tls@client.test",
                 "--to", "user@example.test", "--ehlo", "client.test")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "TLS started" in r.stdout, r.stdout
    rec = received_tls(sink, "swaks-tls@client.test")
    assert rec["tls"].split()[0] in ("TLSv1.2", "TLSv1.3")
    assert d.grep(r"tls version=TLSv1\.[23] cipher=\S+ bits=\d+")


def test_openssl_s_client_starttls(sink, make_posternd, certs):
    d = make_posternd("smtp:" + sink.address, settings=tls_settings(certs))
    r = subprocess.run([px.require("openssl"), "s_client", "-starttls", "smtp", "-crlf", "-ign_eof",
                        "-connect", "127.0.0.1:%d" % d.port, "-servername", "mx.test"],
                       input="QUIT\n", capture_output=True, text=True, timeout=60)
    assert "221 2.0.0" in r.stdout, r.stdout + r.stderr
    assert "subject=CN = mx.test" in r.stdout, r.stdout
    assert "Protocol  : TLSv1.3" in r.stdout or "New, TLSv1.3" in r.stdout, r.stdout


def test_posttls_finger(sink, make_posternd, certs):
    d = make_posternd("smtp:" + sink.address, settings=tls_settings(certs))
    r = subprocess.run([px.require("posttls-finger"), "-c", "-l", "encrypt",
                        "[127.0.0.1]:%d" % d.port], capture_output=True, text=True, timeout=60)
    out = r.stdout + r.stderr
    assert "TLS connection established" in out, out


def test_implicit_tls_listener(sink, make_posternd, certs):
    port, tls_port = px.free_port(), px.free_port()
    s = tls_settings(certs)
    s['listener "smtps"'] = {"address": "127.0.0.1:%d" % tls_port, "tls": "implicit"}
    s["listen"] = ["127.0.0.1:%d" % port]
    make_posternd("smtp:" + sink.address, settings=s, port=port)
    r = pt.swaks("--server", "127.0.0.1:%d" % tls_port, "--tls-on-connect",
                 "--from", "smtps@client.test", "--to", "user@example.test")
    assert r.returncode == 0, r.stdout + r.stderr
    received_tls(sink, "smtps@client.test")
    # and our own client: the greeting arrives over TLS
    with pt.Client(tls_port, implicit_tls=True) as c:
        assert c.greeting().code == 220
        assert c.tls_version() in ("TLSv1.2", "TLSv1.3")
        assert "STARTTLS" not in px.ehlo_keywords(c.ehlo())


def test_plaintext_pipelined_behind_starttls_is_discarded(sink, make_posternd, certs):
    """CVE-2011-0411: MAIL sent in the same packet as STARTTLS must not run."""
    d = make_posternd("smtp:" + sink.address, settings=tls_settings(certs))
    with pt.Client(d.port) as c:
        c.greeting()
        assert "STARTTLS" in px.ehlo_keywords(c.ehlo())
        c.send(b"STARTTLS\r\nMAIL FROM:<evil@client.test>\r\nRCPT TO:<user@example.test>\r\n")
        r = c.reply()
        assert r.code == 220, r
        c.sock = pt.client_context().wrap_socket(c.sock, server_hostname="mx.test")
        kw = px.ehlo_keywords(c.ehlo())               # the session started over
        assert "STARTTLS" not in kw
        r = c.cmd("RCPT TO:<user@example.test>")      # no MAIL survived
        assert r.code == 503, r
        assert c.cmd("MAIL FROM:<good@client.test>").code == 250
        assert c.cmd("RCPT TO:<user@example.test>").code == 250
        assert c.data(px.make_message())[1].code == 250
        c.quit()
    assert d.wait_log(r"starttls discarded=\d+ reason=pipelined-plaintext")
    assert sink.find(mail_from="evil@client.test") == []
    assert len(sink.wait_for(1, mail_from="good@client.test")) == 1


def test_require_tls_before_mail(sink, make_posternd, certs):
    port = px.free_port()
    s = tls_settings(certs)
    s["listen"] = []
    s['listener "submission"'] = {"address": "127.0.0.1:%d" % port, "require_tls": True}
    make_posternd("smtp:" + sink.address, settings=s, port=port)
    with pt.Client(port) as c:
        c.greeting()
        c.ehlo()
        r = c.cmd("MAIL FROM:<plain@client.test>")
        assert r.code == 530 and r.lines[0].startswith("5.7.0"), r
        assert c.starttls().code == 220
        c.ehlo()
        assert c.cmd("MAIL FROM:<tls@client.test>").code == 250


def test_certificate_by_sni(sink, make_posternd, certs):
    d = make_posternd("smtp:" + sink.address, settings=tls_settings(certs, ("mx", "other")))

    def subject(name):
        argv = [px.require("openssl"), "s_client", "-starttls", "smtp", "-crlf", "-ign_eof",
                "-connect", "127.0.0.1:%d" % d.port]
        if name:
            argv += ["-servername", name]
        r = subprocess.run(argv, input="QUIT\n", capture_output=True, text=True, timeout=60)
        return [l for l in r.stdout.splitlines() if l.startswith("subject=")]
    assert subject("other.test") == ["subject=CN = other.test"]
    assert subject("mx.test") == ["subject=CN = mx.test"]
    assert subject(None) == ["subject=CN = mx.test"]


def test_tls_below_1_2_refused(sink, make_posternd, certs):
    d = make_posternd("smtp:" + sink.address, settings=tls_settings(certs))
    r = subprocess.run([px.require("openssl"), "s_client", "-starttls", "smtp", "-crlf", "-ign_eof",
                        "-connect", "127.0.0.1:%d" % d.port, "-tls1_1",
                        "-cipher", "DEFAULT@SECLEVEL=0"],
                       input="QUIT\n", capture_output=True, text=True, timeout=60)
    assert "221 2.0.0" not in r.stdout
    assert "Cipher is (NONE)" in r.stdout or r.returncode != 0, r.stdout
    assert d.alive()


def test_no_starttls_without_certificate(sink, make_posternd):
    d = make_posternd("smtp:" + sink.address)
    with pt.Client(d.port) as c:
        c.greeting()
        assert "STARTTLS" not in px.ehlo_keywords(c.ehlo())
        r = c.cmd("STARTTLS")
        assert r.code == 502, r


def test_starttls_to_the_backend(make_sink, make_posternd, certs, workdir):
    """backend_tls.mode = required: Postern speaks TLS to a Postfix backend
    that offers STARTTLS; Postfix's Received says ESMTPS."""
    sink = make_sink()
    pfdir = workdir / "pf-tls"
    pf = pt.TlsPostfix(str(pfdir), sink.port, extra={
        "smtpd_tls_security_level": "may",
        "smtpd_tls_cert_file": certs["other"][0],
        "smtpd_tls_key_file": certs["other"][1],
        "smtpd_tls_loglevel": "1"})
    pf.start()
    try:
        d = make_posternd("smtp:127.0.0.1:%d" % pf.port, settings={
            "backend_tls": {"mode": "required", "verify": True, "ca_file": certs["other"][0],
                            "server_name": "other.test"}})
        res = px.send_message(d.port, px.make_message(), mail_from="btls@client.test")
        assert res["final"].code == 250, res["final"]
        got = sink.wait_for(1, mail_from="btls@client.test")
        rec, _ = px.pop_header_field(got[0].content)
        assert b"with ESMTPS" in rec and b"(Postfix)" in rec, rec
        assert d.grep(r"relay tls version=TLSv1\.[23] cipher=\S+ bits=\d+ verified=yes")
    finally:
        pf.stop()


def test_backend_tls_required_but_not_offered(sink, make_posternd, certs):
    d = make_posternd("smtp:" + sink.address, settings={"backend_tls": {"mode": "required"}})
    res = px.send_message(d.port, px.make_message(), mail_from="nobtls@client.test")
    assert res["final"].code == 451 and res["final"].lines[0].startswith("4.7.5"), res["final"]
    assert sink.find(mail_from="nobtls@client.test") == []


def test_backend_tls_opportunistic_falls_back(sink, make_posternd):
    """opportunistic: a backend without STARTTLS (smtp-sink) still gets the mail."""
    d = make_posternd("smtp:" + sink.address, settings={"backend_tls": {"mode": "opportunistic"}})
    res = px.send_message(d.port, px.make_message(), mail_from="optls@client.test")
    assert res["final"].code == 250, res["final"]
    assert len(sink.wait_for(1, mail_from="optls@client.test")) == 1
    assert not d.grep(r"relay tls version=")
