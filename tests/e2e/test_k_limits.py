"""k. Invariant 4: every size and wait is bounded, and bad input gets a clear
SMTP reply, never a crash; nothing over a limit reaches the backend."""

import re

import pxtest as px


def open_session(port, helo="client.test"):
    c = px.SmtpClient(port)
    assert c.greeting().code == 220
    e = c.ehlo(helo)
    assert e.code == 250
    return c, px.ehlo_keywords(e)


def test_message_size_max(sink, make_posternd):
    d = make_posternd("smtp:" + sink.address, overrides=["limits.message_size_max=10k"])
    c, kw = open_session(d.port)
    assert re.fullmatch(r"\d+", kw.get("SIZE", "")), kw
    limit = int(kw["SIZE"])
    assert 9000 <= limit <= 10240, limit
    # declared too big: refused at MAIL (RFC 1870)
    r = c.cmd("MAIL FROM:<big@client.test> SIZE=%d" % (limit * 3))
    assert r.code == 552 and r.lines[0].startswith("5.3.4"), r
    # undeclared and too big: refused after the data
    assert c.cmd("MAIL FROM:<big2@client.test>").code == 250
    assert c.cmd("RCPT TO:<user@example.test>").code == 250
    body = (b"x" * 70 + b"\r\n") * 500
    _, final = c.data(px.make_message(body=body))
    assert final.code == 552 and final.lines[0].startswith("5.3.4"), final
    # a small one still goes through on the same connection
    assert c.cmd("MAIL FROM:<small@client.test>").code == 250
    assert c.cmd("RCPT TO:<user@example.test>").code == 250
    assert c.data(px.make_message())[1].code == 250
    c.quit()
    assert [m.mail_from for m in sink.messages()] == ["small@client.test"]


def test_overlong_text_line_refused(sink, make_posternd):
    # the RFC 5321 limit is a setting (the default takes lines up to 1M)
    d = make_posternd("smtp:" + sink.address, overrides=["limits.text_line_max=1000"])
    c, _ = open_session(d.port)
    assert c.cmd("MAIL FROM:<long@client.test>").code == 250
    assert c.cmd("RCPT TO:<user@example.test>").code == 250
    _, final = c.data(px.make_message(body=b"y" * 5000 + b"\r\n"))
    assert final is not None and 500 <= final.code < 600, final
    c.quit()
    assert sink.count() == 0


def test_overlong_command_line(sink, make_posternd):
    d = make_posternd("smtp:" + sink.address)
    c, _ = open_session(d.port)
    try:
        r = c.cmd("MAIL FROM:<%s@client.test>" % ("a" * 5000))
        assert r.code >= 500 or r.code == 421, r
    except ConnectionError:
        pass                    # closing after a reply-less attack is allowed
    c.close()
    assert d.alive()
    c, _ = open_session(d.port)
    assert c.cmd("NOOP").code == 250
    c.quit()


def test_recipients_max(sink, make_posternd):
    d = make_posternd("smtp:" + sink.address, overrides=["limits.recipients_max=3"])
    c, _ = open_session(d.port)
    assert c.cmd("MAIL FROM:<many@client.test>").code == 250
    rr = [c.cmd("RCPT TO:<u%d@example.test>" % i) for i in range(5)]
    assert [r.code for r in rr[:3]] == [250, 250, 250], rr
    for r in rr[3:]:
        assert r.code in (452, 552), r
        assert r.lines[0][1:].startswith(".5.3"), r
    assert c.data(px.make_message())[1].code == 250
    c.quit()
    got = sink.wait_for(1, mail_from="many@client.test")
    assert sorted(got[0].rcpts) == ["u0@example.test", "u1@example.test", "u2@example.test"]


def test_idle_client_times_out(sink, make_posternd):
    d = make_posternd("smtp:" + sink.address, overrides=["timeouts.command=2s"])
    c, _ = open_session(d.port)
    # say nothing: posternd must give up (421) and close; bounded read
    c.sock.settimeout(30)
    try:
        r = c.reply()
        assert r.code == 421 and r.lines[0].startswith("4."), r
    except ConnectionError:
        raise AssertionError("connection closed without a 421")
    except OSError as e:
        raise AssertionError("no 421 after 30 s of silence with timeouts.command=2s (%s)" % e)
    assert c.at_eof(timeout=30)
    c.close()
    assert d.alive()


def test_errors_max(sink, make_posternd):
    d = make_posternd("smtp:" + sink.address, overrides=["limits.errors_max=3"])
    c, _ = open_session(d.port)
    codes = []
    try:
        for i in range(10):
            codes.append(c.cmd("BOGUS%d" % i).code)
            if codes[-1] == 421:
                break
    except ConnectionError:
        pass
    assert 421 in codes, codes
    assert len(codes) <= 5, codes
    c.close()
    assert d.alive()


def test_connections_per_client_max(sink, make_posternd):
    d = make_posternd("smtp:" + sink.address,
                      overrides=["limits.connections_per_client_max=2"])
    # the harness's readiness probe was a connection too: let posternd see it
    # closed before counting (bounded wait on its log)
    d.wait_log(r" disconnect ", 1)
    held = []
    try:
        for _ in range(2):
            c = px.SmtpClient(d.port)
            assert c.greeting().code == 220
            held.append(c)
        extra = px.SmtpClient(d.port)
        try:
            r = extra.greeting()
            assert r.code == 421 and r.lines[0].startswith("4."), r
        except ConnectionError:
            raise AssertionError("third connection closed without a 421")
        finally:
            extra.close()
    finally:
        for c in held:
            c.quit()
    # the slots are freed: a new connection is served (bounded retries while
    # posternd notices the closed ones)
    def served():
        c = px.SmtpClient(d.port)
        try:
            return c.greeting().code == 220
        finally:
            c.close()
    px.wait_until(served, 10, "a free connection slot")


def test_client_stalls_in_data(make_fault_backend, make_posternd):
    """A client silent in the middle of the message text: 421 after
    timeouts.data, connection closed, nothing at the backend."""
    be = make_fault_backend()
    d = make_posternd("smtp:" + be.address, overrides=["timeouts.data=2s"])
    c, _ = open_session(d.port)
    assert c.cmd("MAIL FROM:<slow@client.test>").code == 250
    assert c.cmd("RCPT TO:<ok@example.test>").code == 250
    assert c.cmd("DATA").code == 354
    c.send(b"Subject: half\r\n\r\nhalf a message\r\n")
    c.sock.settimeout(30)
    try:
        r = c.reply()
        assert r.code == 421 and r.lines[0].startswith("4."), r
    except ConnectionError:
        raise AssertionError("connection closed without a 421")
    except OSError as e:
        raise AssertionError("no 421 after 30 s of silence with timeouts.data=2s (%s)" % e)
    assert c.at_eof(timeout=30)
    c.close()
    assert be.accepted == []
    assert d.alive()


def test_session_time_limit(sink, make_posternd):
    """A client that keeps talking (NOOP) past timeouts.session is cut off
    with 421; bounded: at most 60 NOOPs, 0.1 s apart."""
    d = make_posternd("smtp:" + sink.address, overrides=["timeouts.session=2s"])
    c, _ = open_session(d.port)
    import time
    last = None
    try:
        for _ in range(60):
            last = c.cmd("NOOP")
            if last.code != 250:
                break
            time.sleep(0.1)
    except ConnectionError:
        last = None
    c.close()
    assert last is not None and last.code == 421, last
    assert d.alive()


def test_connections_max(sink, make_posternd):
    d = make_posternd("smtp:" + sink.address, overrides=["limits.connections_max=3"])
    d.wait_log(r" disconnect ", 1)
    held = []
    try:
        for _ in range(3):
            c = px.SmtpClient(d.port)
            assert c.greeting().code == 220
            held.append(c)
        extra = px.SmtpClient(d.port)
        try:
            r = extra.greeting()
            assert r.code == 421, r
        except ConnectionError:
            raise AssertionError("fourth connection closed without a 421")
        finally:
            extra.close()
    finally:
        for c in held:
            c.quit()
    assert d.alive()
