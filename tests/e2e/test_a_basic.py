"""a. Basic relaying: greeting, EHLO, Postern's Received header on top of an
otherwise byte-identical message; swaks -> posternd -> a private Postfix;
the 47 malformed-MIME messages of Python's email test corpus pass intact."""

import glob
import os
import re
import subprocess


import pxtest as px

CORPUS = sorted(glob.glob("/usr/lib/python3.11/test/test_email/data/msg_*.txt"))


def corpus_name(path):
    return os.path.basename(path)[:-4]


def test_corpus_present():
    assert len(CORPUS) == 47, "expected the 47 msg_*.txt of libpython3.11-testsuite"


def test_greeting_and_ehlo(make_sink, make_posternd):
    sink = make_sink(["-N"])            # backend without DSN
    d = make_posternd("smtp:" + sink.address)
    with px.SmtpClient(d.port) as c:
        g = c.greeting()
        assert g.code == 220
        assert g.lines[0].startswith("mx.test ESMTP Postern"), g
        e = c.ehlo("client.test")
        assert e.code == 250, e
        kw = px.ehlo_keywords(e)
        for k in ("PIPELINING", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "SIZE"):
            assert k in kw, "EHLO lacks %s: %s" % (k, e)
        assert re.fullmatch(r"\d+", kw["SIZE"]), "SIZE without a number: %r" % kw["SIZE"]
        assert "DSN" not in kw, "DSN advertised though the backend lacks it: %s" % e
        c.quit()


def test_every_reply_has_enhanced_status_code(sink, make_posternd):
    d = make_posternd("smtp:" + sink.address)
    enh = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}( |$)")
    with px.SmtpClient(d.port) as c:
        c.greeting()
        c.ehlo()
        replies = [c.cmd("NOOP"), c.cmd("MAIL FROM:<s@client.test>"),
                   c.cmd("RCPT TO:<user@example.test>"), c.cmd("RSET"),
                   c.cmd("MAIL FROM:<s@client.test>"), c.cmd("MAIL FROM:<s@client.test>"),
                   c.cmd("RCPT TO:<user@example.test>")]
        r354, final = c.data(px.make_message())
        replies += [final, c.cmd("VRFY user"), c.cmd("BOGUS"), c.cmd("RCPT TO:<x@example.test>"),
                    c.cmd("DATA"), c.cmd("MAIL FROM:<broken"), c.cmd("QUIT")]
    for r in replies:
        assert r is not None
        for line in r.lines:
            assert enh.match(line), "reply without enhanced status code: %d %s" % (r.code, line)
        assert r.lines[0][0] == str(r.code)[0], "class mismatch: %s" % r


def check_arrival(msg, sent, helo="client.test", rcpt="user@example.test", proto="ESMTP"):
    """msg: SinkMessage from posternd -> smtp-sink. Postern's Received on top,
    then exactly the bytes sent. Returns the parsed Received fields."""
    rec, rest = px.pop_header_field(msg.content)
    r = px.parse_postern_received(rec)
    assert r["helo"] == helo and r["ip"] == "127.0.0.1" and r["host"] == "mx.test", r
    assert r["proto"] == proto, r
    assert r["for"] == rcpt, r
    assert rest == px.normalise(px.to_crlf(sent)), "message altered in transit"
    return r


def test_one_message_byte_identical(sink, make_posternd):
    d = make_posternd("smtp:" + sink.address)
    msg = px.make_message(body=b".\r\n..\r\n. \r\nline\r\n\r\n\r\n" + b"x" * 990 + b"\r\n")
    res = px.send_message(d.port, msg, mail_from="one@client.test")
    assert res["final"].code == 250, res["final"]
    got = sink.wait_for(1, mail_from="one@client.test")
    assert len(got) == 1
    check_arrival(got[0], msg)
    assert got[0].rcpts == ["user@example.test"]


def test_received_protocol_names(sink, make_posternd):
    """RFC 3848: HELO -> SMTP, EHLO -> ESMTP; "for" only with exactly one
    recipient."""
    d = make_posternd("smtp:" + sink.address)
    msg = px.make_message()
    with px.SmtpClient(d.port) as c:
        c.greeting()
        assert c.cmd("HELO old.client.test").code == 250
        assert c.cmd("MAIL FROM:<helo@client.test>").code == 250
        assert c.cmd("RCPT TO:<user@example.test>").code == 250
        assert c.data(msg)[1].code == 250
        c.quit()
    with px.SmtpClient(d.port) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd("MAIL FROM:<two@client.test>").code == 250
        assert c.cmd("RCPT TO:<a@example.test>").code == 250
        assert c.cmd("RCPT TO:<b@example.test>").code == 250
        assert c.data(msg)[1].code == 250
        c.quit()
    got = sink.wait_all(["helo@client.test", "two@client.test"])
    assert len(got["helo@client.test"]) == 1
    check_arrival(got["helo@client.test"][0], msg, helo="old.client.test", proto="SMTP")
    assert len(got["two@client.test"]) == 1
    two = got["two@client.test"][0]
    assert sorted(two.rcpts) == ["a@example.test", "b@example.test"]
    rec, rest = px.pop_header_field(two.content)
    assert px.parse_postern_received(rec)["for"] is None, rec
    assert rest == px.normalise(msg)


def test_received_utf8smtp(make_fault_backend, make_posternd):
    """RFC 3848/6531: a SMTPUTF8 transaction is recorded "with UTF8SMTP"; the
    UTF-8 envelope and header reach a backend that offers SMTPUTF8 intact."""
    be = make_fault_backend()
    d = make_posternd("smtp:" + be.address)
    msg = px.make_message(extra_headers=["X-Name: J\u00fcrgen".encode("utf-8")])
    with px.SmtpClient(d.port) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd("MAIL FROM:<utf8@client.test> SMTPUTF8").code == 250
        assert c.cmd("RCPT TO:<us\u00e9r@example.test>").code == 250
        assert c.data(msg)[1].code == 250
        c.quit()
    assert len(be.accepted) == 1
    a = be.accepted[0]
    assert a["rcpts"] == ["us\u00e9r@example.test"]
    rec, rest = px.pop_header_field(a["data"])
    r = px.parse_postern_received(rec)
    assert r["proto"] == "UTF8SMTP", r
    assert rest == msg


def test_corpus_via_smtp_sink_exact(sink, make_posternd):
    """Each of the 47 files, one session each: what smtp-sink got is Postern's
    Received header followed by exactly the bytes sent."""
    d = make_posternd("smtp:" + sink.address)
    bad = []
    for path in CORPUS:
        name = corpus_name(path)
        with open(path, "rb") as f:
            data = f.read()
        res = px.send_message(d.port, data, mail_from=name + "@client.test")
        if res["final"].code != 250:
            bad.append("%s: client got %s" % (name, res["final"]))
    got = sink.wait_all([corpus_name(p) + "@client.test" for p in CORPUS])
    for path in CORPUS:
        name = corpus_name(path)
        with open(path, "rb") as f:
            data = f.read()
        copies = got[name + "@client.test"]
        if len(copies) != 1:
            bad.append("%s: %d copies at the backend" % (name, len(copies)))
            continue
        try:
            check_arrival(copies[0], data)
        except AssertionError as e:
            bad.append("%s: %s" % (name, str(e).splitlines()[0]))
    assert not bad, "%d of %d corpus messages failed:\n%s" % (len(bad), len(CORPUS),
                                                                "\n".join(bad))


def _postfix_copy(sink, sender, timeout=px.DELIVERY_WAIT):
    got = sink.wait_for(1, mail_from=sender, timeout=timeout)
    assert len(got) == 1, "%s: %d copies at the backend" % (sender, len(got))
    pf_rec, rest = px.pop_header_field(got[0].content)
    assert pf_rec.startswith(b"Received: from ") and b"(Postfix)" in pf_rec, pf_rec
    return pf_rec, rest


def test_corpus_via_postfix(postfix_backend, make_posternd):
    """The 47 files through posternd to a real MTA (private Postfix relaying to
    smtp-sink), several transactions per session. Postfix's Received is on
    top, Postern's below it, then the message. Postfix itself rewrites a few
    malformed messages (a leading "From " line, a missing header/body
    separator); for every file the copy via posternd must equal what Postfix
    makes of exactly (Postern's Received + the file) sent to it directly."""
    pf, sink = postfix_backend
    d = make_posternd("smtp:127.0.0.1:%d" % pf.port)
    tag = os.path.basename(d.workdir)
    bad = []
    datas = {}
    batch = 8
    for i in range(0, len(CORPUS), batch):
        with px.SmtpClient(d.port) as c:
            c.greeting()
            c.ehlo("client.test")
            for path in CORPUS[i:i + batch]:
                name = corpus_name(path)
                with open(path, "rb") as f:
                    datas[name] = f.read()
                sender = "%s-%s@client.test" % (name, tag)
                m = c.cmd("MAIL FROM:<%s>" % sender)
                r = c.cmd("RCPT TO:<user@example.test>")
                if m.code != 250 or r.code != 250:
                    bad.append("%s: MAIL %s RCPT %s" % (name, m, r))
                    c.cmd("RSET")
                    continue
                _, final = c.data(datas[name])
                if final is None or final.code != 250:
                    bad.append("%s: end of data got %s" % (name, final))
            c.quit()
    untouched = 0
    sink.wait_all(["%s-%s@client.test" % (corpus_name(p), tag) for p in CORPUS])
    for path in CORPUS:
        name = corpus_name(path)
        if any(b.startswith(name + ":") for b in bad):
            continue
        sent = px.normalise(px.to_crlf(datas[name]))
        try:
            _, rest = _postfix_copy(sink, "%s-%s@client.test" % (name, tag), timeout=1)
            rec, body = px.pop_header_field(rest)
            r = px.parse_postern_received(rec)
            assert r["helo"] == "client.test" and r["for"] == "user@example.test", r
        except AssertionError as e:
            bad.append("%s: %s" % (name, str(e).splitlines()[0]))
            continue
        if body == sent:
            untouched += 1
            continue
        # What does Postfix make of the bytes posternd should have sent?
        ref_sender = "%s-%s-direct@client.test" % (name, tag)
        res = px.send_message(pf.port, rec + sent, mail_from=ref_sender)
        assert res["final"].code == 250, res["final"]
        _, ref = _postfix_copy(sink, ref_sender)
        if ref != rest:
            bad.append("%s: differs from what Postfix makes of the original" % name)
    assert not bad, "%d of %d corpus messages failed:\n%s" % (len(bad), len(CORPUS),
                                                                "\n".join(bad))
    assert untouched >= 40, "only %d messages arrived byte-identical" % untouched


def test_swaks_via_postfix(postfix_backend, make_posternd, workdir):
    """swaks -> posternd -> Postfix -> smtp-sink, exact DATA bytes."""
    pf, sink = postfix_backend
    d = make_posternd("smtp:127.0.0.1:%d" % pf.port)
    sender = "swaks-%s@client.test" % os.path.basename(d.workdir)
    msg = px.make_message(subject="via swaks", body=b"..leading dots\r\nend\r\n")
    f = workdir / "swaks.eml"
    # --no-data-fixup: swaks sends the file as is and appends CRLF
    f.write_bytes(px.dot_stuff(msg) + b".")
    r = subprocess.run([px.require("swaks"), "--server", "127.0.0.1:%d" % d.port,
                        "--ehlo", "client.test", "--from", sender,
                        "--to", "user@example.test", "--no-data-fixup", "--data", "@" + str(f),
                        "--timeout", "60"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"^<-  250[ -]", r.stdout.split(" -> .")[-1], re.M), r.stdout
    pf_rec, rest = _postfix_copy(sink, sender)
    rec, body = px.pop_header_field(rest)
    p = px.parse_postern_received(rec)
    assert p["helo"] == "client.test" and p["for"] == "user@example.test", p
    assert body == px.normalise(msg)


def test_backend_sees_real_client(postfix_backend, make_posternd):
    """Invariant 2: the backend learns the real client (XCLIENT/XFORWARD): the
    Postfix backend logs the client's HELO, not posternd's."""
    pf, sink = postfix_backend
    d = make_posternd("smtp:127.0.0.1:%d" % pf.port)
    sender = "xclient-%s@client.test" % os.path.basename(d.workdir)
    res = px.send_message(d.port, px.make_message(), mail_from=sender,
                          helo="real-client.example.net")
    assert res["final"].code == 250, res["final"]
    pf_rec, _ = _postfix_copy(sink, sender)
    assert pf_rec.startswith(b"Received: from real-client.example.net "), pf_rec


def test_8bit_body_and_dsn_parameters(sink, make_posternd):
    """BODY=8BITMIME with 8-bit bytes arrives unchanged; DSN parameters reach a
    backend that offers DSN (smtp-sink does) unchanged."""
    d = make_posternd("smtp:" + sink.address)
    msg = px.make_message(extra_headers=[b"X-Latin1: \xe9t\xe9", b"X-Utf8: \xc3\xa9t\xc3\xa9"],
                          body=b"8-bit \xff\xfe\x80 bytes\r\n\xc3\xa9\r\n")
    with px.SmtpClient(d.port) as c:
        c.greeting()
        kw = px.ehlo_keywords(c.ehlo())
        dsn = "DSN" in kw
        mail = "MAIL FROM:<dsn@client.test> BODY=8BITMIME"
        rcpt = "RCPT TO:<user@example.test>"
        if dsn:
            mail += " RET=HDRS ENVID=env-123"
            rcpt += " NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;user@example.test"
        assert c.cmd(mail).code == 250
        assert c.cmd(rcpt).code == 250
        assert c.data(msg)[1].code == 250
        c.quit()
    got = sink.wait_for(1, mail_from="dsn@client.test")[0]
    check_arrival(got, msg)
    assert "BODY=8BITMIME" in got.mail_args.split(), got.mail_args
    if dsn:
        assert {"RET=HDRS", "ENVID=env-123"} <= set(got.mail_args.split()), got.mail_args
        assert got.rcpt_args == ["<user@example.test> NOTIFY=SUCCESS,FAILURE "
                                 "ORCPT=rfc822;user@example.test"], got.rcpt_args


def test_enhanced_codes_from_backend_without_them(make_sink, make_posternd):
    """smtp-sink -E (no ENHANCEDSTATUSCODES) rejecting RCPT with a bare
    "550 no such user": the client's reply still carries an enhanced code."""
    sink = make_sink(["-E", "-f", "RCPT", "-B", "550 no such user here"])
    d = make_posternd("smtp:" + sink.address)
    with px.SmtpClient(d.port) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd("MAIL FROM:<e@client.test>").code == 250
        r = c.cmd("RCPT TO:<user@example.test>")
        c.quit()
    assert r.code == 550, r
    assert re.match(r"^5\.\d{1,3}\.\d{1,3} ", r.lines[0]), r
