"""d. PIPELINING (RFC 2920) and several transactions on one connection."""

import pxtest as px


def test_pipelined_envelope_four_replies_in_order(sink, make_posternd):
    d = make_posternd("smtp:" + sink.address)
    msg = px.make_message(subject="pipelined")
    with px.SmtpClient(d.port) as c:
        c.greeting()
        assert "PIPELINING" in px.ehlo_keywords(c.ehlo())
        c.send(b"MAIL FROM:<pipe@client.test>\r\nRCPT TO:<a@example.test>\r\n"
               b"RCPT TO:<b@example.test>\r\nDATA\r\n")
        replies = [c.reply() for _ in range(4)]
        assert [r.code for r in replies] == [250, 250, 250, 354], replies
        assert replies[0].lines[0].startswith("2.1.0"), replies[0]
        assert replies[1].lines[0].startswith("2.1.5"), replies[1]
        c.send(px.data_payload(msg))
        final = c.reply()
        assert final.code == 250, final
        assert c.quit().code == 221
    got = sink.wait_for(1, mail_from="pipe@client.test")
    assert len(got) == 1
    assert sorted(got[0].rcpts) == ["a@example.test", "b@example.test"]
    rec, rest = px.pop_header_field(got[0].content)
    px.parse_postern_received(rec)
    assert rest == px.normalise(msg)


def test_pipelined_with_backend_rejecting_one(make_fault_backend, make_posternd):
    """The backend's per-RCPT answers come back in order within the pipeline."""
    be = make_fault_backend()
    d = make_posternd("smtp:" + be.address)
    msg = px.make_message()
    with px.SmtpClient(d.port) as c:
        c.greeting()
        c.ehlo()
        c.send(b"MAIL FROM:<pipe2@client.test>\r\nRCPT TO:<rcpt-reject@example.test>\r\n"
               b"RCPT TO:<ok@example.test>\r\nRCPT TO:<nobody@elsewhere.test>\r\nDATA\r\n")
        replies = [c.reply() for _ in range(5)]
        codes = [r.code for r in replies]
        # elsewhere.test: relayed, as 127.0.0.1 is trusted by default
        assert codes == [250, 550, 250, 250, 354], replies
        c.send(px.data_payload(msg))
        assert c.reply().code == 250
        c.quit()
    assert len(be.accepted) == 1
    assert be.accepted[0]["rcpts"] == ["ok@example.test", "nobody@elsewhere.test"]


def test_message_and_quit_in_one_write(sink, make_posternd):
    """EHLO alone (RFC 2920: EHLO ends a group), the envelope and DATA in one
    write, then the message, its end and QUIT in another."""
    d = make_posternd("smtp:" + sink.address)
    msg = px.make_message(subject="two writes")
    with px.SmtpClient(d.port) as c:
        c.greeting()
        assert c.ehlo().code == 250
        c.send(b"MAIL FROM:<w2@client.test>\r\nRCPT TO:<user@example.test>\r\nDATA\r\n")
        replies = [c.reply() for _ in range(3)]
        assert [r.code for r in replies] == [250, 250, 354], replies
        c.send(px.data_payload(msg) + b"QUIT\r\n")
        assert c.reply().code == 250
        assert c.reply().code == 221
        assert c.at_eof()
    assert len(sink.wait_for(1, mail_from="w2@client.test")) == 1


def test_several_transactions_one_connection(sink, make_posternd):
    d = make_posternd("smtp:" + sink.address)
    msgs = [px.make_message(subject="txn %d" % i) for i in range(4)]
    with px.SmtpClient(d.port) as c:
        c.greeting()
        c.ehlo()
        # 1: plain
        assert c.cmd("MAIL FROM:<t0@client.test>").code == 250
        assert c.cmd("RCPT TO:<user@example.test>").code == 250
        assert c.data(msgs[0])[1].code == 250
        # 2: an envelope abandoned with RSET, then a new one
        assert c.cmd("MAIL FROM:<abandoned@client.test>").code == 250
        assert c.cmd("RCPT TO:<user@example.test>").code == 250
        assert c.cmd("RSET").code == 250
        assert c.cmd("MAIL FROM:<t1@client.test>").code == 250
        assert c.cmd("RCPT TO:<user@example.test>").code == 250
        assert c.data(msgs[1])[1].code == 250
        # 3: MAIL again right after a message, pipelined with RSET first
        c.send(b"RSET\r\nMAIL FROM:<t2@client.test>\r\nRCPT TO:<user@example.test>\r\nDATA\r\n")
        assert [c.reply().code for _ in range(4)] == [250, 250, 250, 354]
        c.send(px.data_payload(msgs[2]))
        assert c.reply().code == 250
        # 4: null sender
        assert c.cmd("MAIL FROM:<>").code == 250
        assert c.cmd("RCPT TO:<user@example.test>").code == 250
        assert c.data(msgs[3])[1].code == 250
        assert c.quit().code == 221
    got = sink.wait_all(["t0@client.test", "t1@client.test", "t2@client.test", ""])
    assert all(len(v) == 1 for v in got.values()), got
    assert not sink.find(mail_from="abandoned@client.test")
    assert sink.count() == 4
    for i, s in enumerate(["t0@client.test", "t1@client.test", "t2@client.test", ""]):
        rec, rest = px.pop_header_field(got[s][0].content)
        px.parse_postern_received(rec)
        assert rest == px.normalise(msgs[i])
