"""r. Real-world defaults (issue 7, must-show 9).

Lines over 998 bytes, which Outlook, IIS and other Microsoft senders write,
are accepted up to text_line_max (default 1M) and relayed byte for byte;
text_line_max = 1000 refuses them (DATA and BDAT alike: one checker). EHLO
advertises the smaller of our SIZE and the backend's. A refused BDAT is a
client error like any other: a loop of them ends with 421 at errors_max.
XCLIENT carries only attributes the backend listed, and no PORT when the
port is unknown. STARTTLS to a backend named by an IP literal sends no SNI.
Bare-LF normalisation keeps every dot of the text."""

import os
import re
import signal
import socket
import subprocess

import pytest

import pxtest as px

# a 5,000-byte line (CRLF included) of every printable byte, and one that
# starts with a dot (stuffed by the client and by the relay, unstuffed twice)
LINE = (bytes(range(0x21, 0x7f)) * 60)[:4998] + b"\r\n"
DOT_LINE = b"." + LINE[1:]
BODY = b"short line\r\n" + LINE + DOT_LINE + b"last line\r\n"
assert len(LINE) == len(DOT_LINE) == 5000


def split_at(data, *cuts):
    """data cut into chunks at the given offsets"""
    out, prev = [], 0
    for c in cuts + (len(data),):
        out.append(data[prev:c])
        prev = c
    return out


# ------------------------------------------------------------- long lines --

def test_long_line_relayed_byte_for_byte(sink, make_posternd):
    d = make_posternd("smtp:" + sink.address)
    msg = px.make_message(subject="long line", body=BODY)
    res = px.send_message(d.port, msg, mail_from="long-data@client.test")
    assert res["final"].code == 250, res
    got = sink.wait_for(1, mail_from="long-data@client.test")
    assert len(got) == 1
    _, content = px.pop_header_field(got[0].content)        # our Received
    assert content == px.normalise(msg)
    lines = content.split(b"\n")
    assert LINE[:-2] in lines and DOT_LINE[:-2] in lines      # each one line, whole


def test_long_line_bdat_relayed_byte_for_byte(make_fault_backend, make_posternd):
    """BDAT goes through the same checker: a 5,000-byte line split across
    chunks (one cut between its CR and LF) arrives exactly as sent."""
    be = make_fault_backend()
    d = make_posternd("smtp:" + be.address)
    msg = px.make_message(subject="long bdat", body=BODY)
    cr = msg.index(LINE) + len(LINE) - 1                       # the LF of LINE
    replies = px.bdat_session(d.port, "long-bdat@client.test",
                           split_at(msg, msg.index(LINE) + 2000, cr, cr + 1000))
    assert [r.code for r in replies] == [250, 250, 250, 250], replies
    assert len(be.accepted) == 1
    _, content = px.pop_header_field(be.accepted[0]["data"])
    assert content == msg


def test_long_line_refused_with_setting(sink, make_posternd):
    d = make_posternd("smtp:" + sink.address, settings={"limits": {"text_line_max": 1000}})
    msg = px.make_message(subject="strict", body=BODY)
    res = px.send_message(d.port, msg, mail_from="strict-data@client.test")
    assert res["final"].code == 554 and res["final"].lines[0].startswith("5.6.0"), res
    assert "1000" in res["final"].text
    replies = px.bdat_session(d.port, "strict-bdat@client.test", split_at(msg, 700))
    assert replies[0].code == 250, replies
    assert replies[1].code == 554 and replies[1].lines[0].startswith("5.6.0"), replies
    # 998 characters and CRLF is the RFC's limit: still fine
    ok = px.make_message(subject="998", body=b"z" * 998 + b"\r\n")
    assert px.send_message(d.port, ok, mail_from="strict-ok@client.test")["final"].code == 250
    sink.wait_for(1, mail_from="strict-ok@client.test")
    assert sink.find(mail_from="strict-data@client.test") == []
    assert sink.find(mail_from="strict-bdat@client.test") == []


# ------------------------------------------------------------------- SIZE --

def ehlo_size(port):
    with px.SmtpClient(port) as c:
        c.greeting()
        kw = px.ehlo_keywords(c.ehlo())
        c.quit()
    return kw.get("SIZE")


def test_ehlo_size_is_the_backends_when_smaller(make_fault_backend, make_posternd):
    be = make_fault_backend(ehlo=("PIPELINING", "8BITMIME", "SIZE 20000",
                                        "ENHANCEDSTATUSCODES"))
    d = make_posternd("smtp:" + be.address)      # ours: 50M
    assert ehlo_size(d.port) == "20000"
    with px.SmtpClient(d.port) as c:
        c.greeting()
        c.ehlo()
        r = c.cmd("MAIL FROM:<big@client.test> SIZE=30000")
        assert r.code == 552 and r.lines[0].startswith("5.3.4"), r
        assert c.cmd("MAIL FROM:<fits@client.test> SIZE=10000").code == 250
        assert c.cmd("RCPT TO:<user@example.test>").code == 250
        assert c.data(px.make_message(subject="fits"))[1].code == 250
        c.quit()
    assert [m["mail_from"] for m in be.accepted] == ["fits@client.test"]


def test_ehlo_size_is_ours_when_smaller(make_fault_backend, make_posternd):
    be = make_fault_backend(ehlo=("PIPELINING", "SIZE 1000000"))
    d = make_posternd("smtp:" + be.address, settings={"limits": {"message_size_max": "10k"}})
    assert ehlo_size(d.port) == "10240"
    be0 = make_fault_backend()                   # "SIZE 0": no limit of its own
    d0 = make_posternd("smtp:" + be0.address, settings={"limits": {"message_size_max": "64k"}})
    assert ehlo_size(d0.port) == str(64 * 1024)


# ------------------------------------------------------- BDAT and errors --

def test_refused_bdat_loop_ends_with_421(sink, make_posternd):
    """BDAT without MAIL, again and again: each chunk is read and refused
    (503), and each refusal counts, so errors_max ends the session."""
    d = make_posternd("smtp:" + sink.address, settings={"limits": {"errors_max": 3}})
    chunk = b"MAIL FROM:<evil@client.test>\r\n" + b"x" * 100 + b"\r\n"
    codes = []
    with px.SmtpClient(d.port) as c:
        c.greeting()
        c.ehlo()
        for _ in range(10):
            c.send(b"BDAT %d\r\n" % len(chunk) + chunk)
            r = c.reply()
            codes.append(r.code)
            if r.code == 421:
                assert r.lines[0].startswith("4.7.0"), r
                break
        assert c.at_eof()
    assert codes == [503, 503, 503, 421], codes
    assert d.wait_log(r"disconnect reason=too-many-errors")
    assert d.alive()
    assert px.send_message(d.port, px.make_message(), mail_from="after@client.test")[
        "final"].code == 250
    assert sink.find(mail_from="evil@client.test") == []


# ---------------------------------------------------------------- XCLIENT --

def xclient_lines(be):
    return [l for l in be.seen_commands if l.startswith("XCLIENT ")]


def test_xclient_no_port_when_unknown(make_fault_backend, make_posternd):
    be = make_fault_backend(ehlo=("PIPELINING", "8BITMIME",
                                        "XCLIENT NAME ADDR PORT PROTO HELO"))
    d = make_posternd("smtp:" + be.address, settings={"xclient_sources": ["127.0.0.1/32"]})
    # a direct client: its port is known and sent
    assert px.send_message(d.port, px.make_message(), mail_from="direct@client.test")[
        "final"].code == 250
    sent = xclient_lines(be)
    assert len(sent) == 1 and re.search(r" PORT=[1-9][0-9]*( |$)", sent[0]), sent
    # a front end speaks for a client with ADDR but no PORT: none goes on
    with px.SmtpClient(d.port) as c:
        c.greeting()
        c.ehlo("frontend.test")
        assert c.cmd("XCLIENT ADDR=192.0.2.44 NAME=mail.example.net").code == 220
        c.ehlo("orig.example.net")
        assert c.cmd("MAIL FROM:<fronted@client.test>").code == 250
        assert c.cmd("RCPT TO:<user@example.test>").code == 250
        assert c.data(px.make_message())[1].code == 250
        c.quit()
    sent = xclient_lines(be)
    assert len(sent) == 2, sent
    assert "ADDR=192.0.2.44" in sent[1] and "NAME=mail.example.net" in sent[1], sent
    assert "PORT=" not in sent[1], sent


def test_xclient_only_listed_attributes(make_fault_backend, make_posternd):
    be = make_fault_backend(ehlo=("PIPELINING", "XCLIENT NAME ADDR"))
    d = make_posternd("smtp:" + be.address)
    assert px.send_message(d.port, px.make_message(), mail_from="listed@client.test")[
        "final"].code == 250
    sent = xclient_lines(be)
    assert len(sent) == 1, sent
    attrs = sorted(a.split("=", 1)[0] for a in sent[0].split()[1:])
    assert attrs == ["ADDR", "NAME"], sent


# ---------------------------------------------------------- normalisation --

def test_normalisation_keeps_every_dot(make_fault_backend, make_posternd):
    """normalize_bare_networks: "\\n.\\n" becomes CRLF "." CRLF: the dot
    after a bare LF was not stuffed by the client, so it stays."""
    be = make_fault_backend()
    d = make_posternd("smtp:" + be.address,
                      settings={"normalize_bare_networks": ["127.0.0.0/8"]})
    head = px.make_message(subject="dots", body=b"")
    wire = head + b"one\n.\ntwo\n..three\r\n.\r\n"
    with px.SmtpClient(d.port) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd("MAIL FROM:<dots@client.test>").code == 250
        assert c.cmd("RCPT TO:<user@example.test>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(wire)
        r = c.reply()
        assert r.code == 250, r
        c.quit()
    assert len(be.accepted) == 1
    _, content = px.pop_header_field(be.accepted[0]["data"])
    assert content == head + b"one\r\n.\r\ntwo\r\n..three\r\n", content[-60:]


# ------------------------------------------------------ backend by name --

def test_backend_name_resolved_at_load(make_fault_backend, make_posternd):
    """A backend given by name is resolved when the configuration loads (the
    main thread), not by the I/O thread at each connection."""
    first = socket.getaddrinfo("localhost", None, type=socket.SOCK_STREAM)[0][4][0]
    if first != px.HOST:
        pytest.skip("localhost resolves to %s first here" % first)
    be = make_fault_backend()
    d = make_posternd("smtp:localhost:%d" % be.port)
    assert d.wait_log(r"backend resolve host=localhost port=%d addr=127\.0\.0\.1" % be.port)
    assert px.send_message(d.port, px.make_message(), mail_from="byname@client.test")[
        "final"].code == 250
    os.kill(d.proc.pid, signal.SIGHUP)              # a new generation resolves it again
    d.wait_log(r"reload status=ok")
    assert px.send_message(d.port, px.make_message(), mail_from="byname2@client.test")[
        "final"].code == 250
    assert [m["mail_from"] for m in be.accepted] == ["byname@client.test", "byname2@client.test"]


# -------------------------------------------------------------------- SNI --

def ip_cert(directory):
    """A self-signed certificate for the IP literal 127.0.0.1 (and a name)."""
    os.makedirs(directory, exist_ok=True)
    cert, key = os.path.join(directory, "ip.crt"), os.path.join(directory, "ip.key")
    subprocess.run([px.require("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                    "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=backend.test",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:backend.test"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def test_no_sni_for_an_ip_literal(make_posternd, make_fault_backend, workdir):
    cert, key = ip_cert(str(workdir / "ipcert"))
    be = make_fault_backend(ehlo=("8BITMIME",), tls=(cert, key))
    # the backend named by its address, verified against the IP in the certificate
    d = make_posternd("smtp:127.0.0.1:%d" % be.port, settings={
        "backend_tls": {"mode": "required", "verify": True, "ca_file": cert}})
    res = px.send_message(d.port, px.make_message(), mail_from="ip-sni@client.test")
    assert res["final"].code == 250, res["final"]
    assert d.grep(r"relay tls version=TLSv1\.[23] cipher=\S+ bits=\d+ verified=yes")
    assert be.sni == [None], be.sni
    # a server_name that is a host name still goes out as SNI
    d2 = make_posternd("smtp:127.0.0.1:%d" % be.port, settings={
        "backend_tls": {"mode": "required", "verify": True, "ca_file": cert,
                        "server_name": "backend.test"}})
    res = px.send_message(d2.port, px.make_message(), mail_from="name-sni@client.test")
    assert res["final"].code == 250, res["final"]
    assert be.sni == [None, "backend.test"], be.sni
    assert [m["mail_from"] for m in be.accepted] == ["ip-sni@client.test", "name-sni@client.test"]
