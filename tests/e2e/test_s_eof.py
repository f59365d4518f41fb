"""s. End of input with work buffered (issue 7): a client that sends its last
message and QUIT and then half-closes (TCP FIN) in one flight still has its
message relayed and its replies written; a pipelined group that RFC 2920
allows (message text, then MAIL, RCPT, DATA in one write) is answered
normally; a message cut off by the end of input is not relayed. The TLS
form (close_notify) is in test_o_abuse.py."""

import socket

import pxtest as px


def _half_close_flight(c, payload):
    c.send(payload)
    c.sock.shutdown(socket.SHUT_WR)


def test_message_quit_fin_in_one_flight(sink, make_posternd):
    d = make_posternd("smtp:" + sink.address)
    for i in range(5):
        msg = px.make_message(subject="fin %d" % i)
        with px.SmtpClient(d.port) as c:
            c.greeting()
            c.ehlo()
            _half_close_flight(c, b"MAIL FROM:<fin%d@client.test>\r\n"
                               b"RCPT TO:<user@example.test>\r\nDATA\r\n" % i)
            # DATA ends a group: the message follows its 354 (the client
            # half-closed already, as a sender that is done talking would
            # after the last write; the replies still come)
            replies = [c.reply() for _ in range(3)]
            assert [r.code for r in replies] == [250, 250, 354], replies
    # the same, but the whole last message and QUIT before the FIN
    for i in range(5):
        msg = px.make_message(subject="fin2 %d" % i)
        with px.SmtpClient(d.port) as c:
            c.greeting()
            c.ehlo()
            c.send(b"MAIL FROM:<fin2-%d@client.test>\r\nRCPT TO:<user@example.test>\r\n"
                   b"DATA\r\n" % i)
            assert [c.reply().code for _ in range(3)] == [250, 250, 354]
            _half_close_flight(c, px.data_payload(msg) + b"QUIT\r\n")
            final = c.reply()
            assert final.code == 250, final
            assert c.reply().code == 221
            assert c.at_eof()
        assert sink.wait_for(1, mail_from="fin2-%d@client.test" % i)
    assert "client end-of-input" in d.log() or "reason=quit" in d.log()


def test_message_then_next_envelope_in_one_write(sink, make_posternd):
    """RFC 2920: the end of one message and the next MAIL, RCPT, DATA may go
    in one write; each gets its own reply, in order."""
    d = make_posternd("smtp:" + sink.address)
    m1 = px.make_message(subject="first")
    m2 = px.make_message(subject="second")
    with px.SmtpClient(d.port) as c:
        c.greeting()
        c.ehlo()
        c.send(b"MAIL FROM:<g1@client.test>\r\nRCPT TO:<user@example.test>\r\nDATA\r\n")
        assert [c.reply().code for _ in range(3)] == [250, 250, 354]
        c.send(px.data_payload(m1) + b"MAIL FROM:<g2@client.test>\r\n"
               b"RCPT TO:<user@example.test>\r\nDATA\r\n")
        assert [c.reply().code for _ in range(4)] == [250, 250, 250, 354]
        c.send(px.data_payload(m2))
        assert c.reply().code == 250
        assert c.quit().code == 221
    assert sink.wait_for(1, mail_from="g1@client.test")
    assert sink.wait_for(1, mail_from="g2@client.test")


def test_cut_off_message_is_not_relayed(sink, make_posternd):
    d = make_posternd("smtp:" + sink.address)
    msg = px.make_message(subject="cut")
    with px.SmtpClient(d.port) as c:
        c.greeting()
        c.ehlo()
        c.send(b"MAIL FROM:<cut@client.test>\r\nRCPT TO:<user@example.test>\r\nDATA\r\n")
        assert [c.reply().code for _ in range(3)] == [250, 250, 354]
        _half_close_flight(c, px.data_payload(msg)[:-5])
        assert c.at_eof()
    px.wait_until(lambda: "message incomplete at end of input" in d.log(), 10,
                  "the cut-off message logged")
    assert not sink.find(mail_from="cut@client.test")
