"""t1. Limits, timeouts, early talkers and unauthorised pipelining (issue 3,
must-show 6 and 7). Each limit, when hit, gives its reply with its enhanced
code, and the server goes on serving other clients."""

import time

import pxtest as px
import pxtransport as pt


def still_serving(d, sink, tag):
    """Another client still gets its message through."""
    sender = "after-%s@client.test" % tag
    res = px.send_message(d.port, px.make_message(subject=tag), mail_from=sender)
    assert res["final"].code == 250, res["final"]
    assert len(sink.wait_for(1, mail_from=sender)) == 1


def open_session(d, helo="client.test"):
    c = px.SmtpClient(d.port)
    assert c.greeting().code == 220
    assert c.ehlo(helo).code == 250
    return c


# ------------------------------------------------- early talker (pregreet) --

def test_early_talker_refused(sink, make_posternd):
    d = make_posternd("smtp:" + sink.address, settings={"timeouts": {"greeting_delay": "2s"}})
    with px.SmtpClient(d.port) as c:
        c.send(b"EHLO hasty.test\r\n")          # before the (delayed) greeting
        r = c.reply()
        assert r.code == 554 and r.lines[0].startswith("5.5.1"), r
        assert "before the greeting" in r.text
        assert c.at_eof()
    assert d.wait_log(r"reject reason=early-talker")
    with px.SmtpClient(d.port) as c:            # a patient client is greeted
        assert c.greeting().code == 220
    still_serving(d, sink, "early")


# ------------------------------------------------ unauthorised pipelining --

def test_pipelining_before_ehlo_reply_refused(sink, make_posternd):
    d = make_posternd("smtp:" + sink.address)
    with px.SmtpClient(d.port) as c:
        c.greeting()
        c.send(b"EHLO client.test\r\nMAIL FROM:<p1@client.test>\r\n")
        r = c.reply()
        assert r.code == 554 and r.lines[0].startswith("5.5.0"), r
        assert c.at_eof()
    still_serving(d, sink, "pipe1")
    assert sink.find(mail_from="p1@client.test") == []


def test_pipelining_after_helo_refused(sink, make_posternd):
    """HELO announces no PIPELINING: a client may not pipeline after it."""
    d = make_posternd("smtp:" + sink.address)
    with px.SmtpClient(d.port) as c:
        c.greeting()
        assert c.cmd("HELO client.test").code == 250
        c.send(b"MAIL FROM:<p2@client.test>\r\nRCPT TO:<user@example.test>\r\n")
        r = c.reply()
        assert r.code == 554 and r.lines[0].startswith("5.5.0"), r
        assert c.at_eof()
    assert sink.find(mail_from="p2@client.test") == []


def test_pipelining_behind_data_refused(sink, make_posternd):
    """DATA ends a pipeline group: message text sent before 354 is refused."""
    d = make_posternd("smtp:" + sink.address)
    with open_session(d) as c:
        assert c.cmd("MAIL FROM:<p3@client.test>").code == 250
        assert c.cmd("RCPT TO:<user@example.test>").code == 250
        c.send(b"DATA\r\nSubject: early\r\n\r\nbody\r\n.\r\n")
        r = c.reply()
        assert r.code == 554 and r.lines[0].startswith("5.5.0"), r
    assert sink.find(mail_from="p3@client.test") == []
    still_serving(d, sink, "pipe3")


def test_pipelining_with_pipelining_allowed(sink, make_posternd):
    """After the EHLO reply, MAIL/RCPT/DATA may be pipelined (RFC 2920)."""
    d = make_posternd("smtp:" + sink.address)
    with open_session(d) as c:
        c.send(b"MAIL FROM:<p4@client.test>\r\nRCPT TO:<user@example.test>\r\nDATA\r\n")
        assert [c.reply().code for _ in range(3)] == [250, 250, 354]
        c.send(px.data_payload(px.make_message()))
        assert c.reply().code == 250
    assert len(sink.wait_for(1, mail_from="p4@client.test")) == 1


# ------------------------------------------------------------------ sizes --

def test_command_line_too_long(sink, make_posternd):
    d = make_posternd("smtp:" + sink.address, settings={"limits": {"command_line_max": 512}})
    with open_session(d) as c:
        r = c.cmd("MAIL FROM:<%s@client.test>" % ("a" * 600))
        assert r.code == 500 and r.lines[0].startswith("5.5.2"), r
        assert c.cmd("NOOP").code == 250          # the session goes on
    still_serving(d, sink, "cmdline")


def test_text_line_too_long(sink, make_posternd):
    # RFC 5321 strictness is a setting; the default takes lines up to 1M
    d = make_posternd("smtp:" + sink.address, settings={"limits": {"text_line_max": 1000}})
    body = b"x" * 1200 + b"\r\n"
    res = px.send_message(d.port, px.make_message(body=body), mail_from="long@client.test")
    assert res["final"].code == 554 and res["final"].lines[0].startswith("5.6.0"), res
    assert sink.find(mail_from="long@client.test") == []
    still_serving(d, sink, "textline")


def test_size_parameter_above_limit(sink, make_posternd):
    d = make_posternd("smtp:" + sink.address, settings={"limits": {"message_size_max": "64k"}})
    with open_session(d) as c:
        kw = px.ehlo_keywords(c.ehlo())
        assert kw["SIZE"] == str(64 * 1024)
        r = c.cmd("MAIL FROM:<size@client.test> SIZE=%d" % (64 * 1024 + 1))
        assert r.code == 552 and r.lines[0].startswith("5.3.4"), r
    still_serving(d, sink, "sizeparam")


def test_actual_size_above_limit(sink, make_posternd):
    d = make_posternd("smtp:" + sink.address, settings={"limits": {"message_size_max": "64k"}})
    body = (b"y" * 70 + b"\r\n") * 1000             # ~72 kB, declared nowhere
    res = px.send_message(d.port, px.make_message(body=body), mail_from="big@client.test")
    assert res["final"].code == 552 and res["final"].lines[0].startswith("5.3.4"), res
    assert sink.find(mail_from="big@client.test") == []
    still_serving(d, sink, "actualsize")


def test_recipients_per_message(sink, make_posternd):
    d = make_posternd("smtp:" + sink.address, settings={"limits": {"recipients_max": 3}})
    with open_session(d) as c:
        assert c.cmd("MAIL FROM:<rcpts@client.test>").code == 250
        codes = [c.cmd("RCPT TO:<u%d@example.test>" % i) for i in range(4)]
        assert [r.code for r in codes[:3]] == [250, 250, 250]
        assert codes[3].code == 452 and codes[3].lines[0].startswith("4.5.3"), codes[3]
        _, final = c.data(px.make_message())
        assert final.code == 250
    got = sink.wait_for(1, mail_from="rcpts@client.test")
    assert sorted(got[0].rcpts) == ["u0@example.test", "u1@example.test", "u2@example.test"]


def test_errors_then_421(sink, make_posternd):
    d = make_posternd("smtp:" + sink.address, settings={"limits": {"errors_max": 3}})
    with open_session(d) as c:
        for _ in range(3):
            assert c.cmd("BOGUS").code == 500
        r = c.cmd("BOGUS")
        assert r.code == 421 and r.lines[0].startswith("4.7.0"), r
        assert c.at_eof()
    still_serving(d, sink, "errors")


# ------------------------------------------------------------ connections --

def test_per_client_limit_holds_against_200(sink, make_posternd):
    """200 connections from 127.0.0.1 with connections_per_client_max = 5:
    5 are served, the rest get 421 4.7.0; 127.0.0.2 still gets through."""
    d = make_posternd("smtp:" + sink.address,
                      settings={"limits": {"connections_per_client_max": 5}})
    d.wait_log(r"disconnect reason=client-eof")   # the start-up probe's slot is free
    socks = []
    try:
        for _ in range(200):
            socks.append(pt.connect_from("127.0.0.1", d.port))
        first = [pt.read_reply_line(s) for s in socks]
        ok = [l for l in first if l.startswith(b"220 ")]
        refused = [l for l in first if l.startswith(b"421 4.7.0")]
        assert len(ok) == 5, first[:10]
        assert len(refused) == 195, [l for l in first if not l.startswith(b"220")][:5]
        other = pt.connect_from("127.0.0.2", d.port)
        socks.append(other)
        assert pt.read_reply_line(other).startswith(b"220 ")
    finally:
        for s in socks:
            s.close()
    still_serving(d, sink, "perclient")


def test_total_connection_limit(sink, make_posternd):
    d = make_posternd("smtp:" + sink.address, settings={"limits": {"connections_max": 3}})
    d.wait_log(r"disconnect reason=client-eof")   # the start-up probe's slot is free
    socks = [pt.connect_from("127.0.0.%d" % (i + 1), d.port) for i in range(3)]
    try:
        assert all(pt.read_reply_line(s).startswith(b"220 ") for s in socks)
        extra = pt.connect_from("127.0.0.9", d.port)
        socks.append(extra)
        line = pt.read_reply_line(extra)
        assert line.startswith(b"421 4.7.0"), line
    finally:
        for s in socks:
            s.close()
    # the slots come back when the sessions end (bounded retry, no timing)
    d.wait_log(r"disconnect reason=client-eof", n=4)
    still_serving(d, sink, "total")


# --------------------------------------------------------------- timeouts --

def test_command_timeout(sink, make_posternd):
    d = make_posternd("smtp:" + sink.address, settings={"timeouts": {"command": "1s"}})
    with px.SmtpClient(d.port) as c:
        c.greeting()
        r = c.reply()                          # we say nothing: the server times out
        assert r.code == 421 and r.lines[0].startswith("4.4.2"), r
        assert "timeout" in r.text
        assert c.at_eof()
    still_serving(d, sink, "cmdtimeout")


def test_data_timeout(sink, make_posternd):
    d = make_posternd("smtp:" + sink.address, settings={"timeouts": {"data": "1s"}})
    with open_session(d) as c:
        assert c.cmd("MAIL FROM:<dt@client.test>").code == 250
        assert c.cmd("RCPT TO:<user@example.test>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(b"Subject: half a message\r\n")
        r = c.reply()
        assert r.code == 421 and r.lines[0].startswith("4.4.2"), r
    assert sink.find(mail_from="dt@client.test") == []
    still_serving(d, sink, "datatimeout")


def test_session_time_limit(sink, make_posternd):
    d = make_posternd("smtp:" + sink.address, settings={"timeouts": {"session": "2s"}})
    with open_session(d) as c:
        r = None
        for _ in range(200):                   # busy, but not for ever
            r = c.cmd("NOOP")
            if r.code != 250:
                break
            time.sleep(0.1)
        assert r.code == 421 and r.lines[0].startswith("4.4.2"), r
        assert "session time limit" in r.text
    still_serving(d, sink, "sessionlimit")
