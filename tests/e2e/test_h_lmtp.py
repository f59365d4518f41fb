"""h. The LMTP backend (aiosmtpd's LMTP server, over TCP and a UNIX socket):
one reply per recipient after the data; when they disagree the client gets
451 (it retries, so nothing is lost); when they agree, that reply's class."""

import os

import pytest

import pxtest as px


def transaction(port, rcpts, message, sender="lmtp@client.test"):
    with px.SmtpClient(port) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd("MAIL FROM:<%s>" % sender).code == 250
        rr = [c.cmd("RCPT TO:<%s>" % r) for r in rcpts]
        assert all(r.code == 250 for r in rr), rr
        _, final = c.data(message)
        c.quit()
    return final


def check_copy(data, sent, rcpt=None):
    rec, rest = px.pop_header_field(data)
    p = px.parse_postern_received(rec)
    assert p["for"] == rcpt, p
    assert rest == sent, "message altered on the way to LMTP"


def test_lmtp_single_recipient(lmtp_server, make_posternd):
    d = make_posternd(lmtp_server.backend)
    msg = px.make_message(subject="lmtp one", body=b".\r\n..x\r\nend\r\n")
    final = transaction(d.port, ["user@example.test"], msg)
    assert final.code == 250, final
    assert final.lines[0].startswith("2."), final
    assert len(lmtp_server.accepted) == 1
    check_copy(lmtp_server.accepted[0]["data"], msg, "user@example.test")


def test_lmtp_all_recipients_accept(lmtp_server, make_posternd):
    d = make_posternd(lmtp_server.backend)
    msg = px.make_message(subject="lmtp three")
    rcpts = ["a@example.test", "b@example.test", "c@example.test"]
    final = transaction(d.port, rcpts, msg)
    assert final.code == 250, final
    assert len(lmtp_server.accepted) == 1
    assert lmtp_server.accepted[0]["rcpts"] == rcpts
    assert lmtp_server.transactions[0]["replies"][2].startswith("250")
    check_copy(lmtp_server.accepted[0]["data"], msg)


@pytest.mark.parametrize("rcpts", [
    ["ok@example.test", "tempfail@example.test"],
    ["tempfail@example.test", "ok@example.test"],
    ["ok@example.test", "reject@example.test"],
    ["ok1@example.test", "ok2@example.test", "tempfail@example.test"],
    ["tempfail@example.test", "reject@example.test"],
], ids=["ok+tempfail", "tempfail+ok", "ok+reject", "ok+ok+tempfail", "tempfail+reject"])
def test_lmtp_disagreement_gives_451(lmtp_server, make_posternd, rcpts):
    d = make_posternd(lmtp_server.backend)
    final = transaction(d.port, rcpts, px.make_message())
    assert final.code == 451, final
    assert final.lines[0].startswith("4."), final
    assert len(lmtp_server.transactions) == 1
    assert len(lmtp_server.transactions[0]["replies"]) == len(rcpts)


def test_lmtp_all_tempfail(lmtp_server, make_posternd):
    d = make_posternd(lmtp_server.backend)
    final = transaction(d.port, ["tempfail1@example.test", "tempfail2@example.test"],
                        px.make_message())
    assert 400 <= final.code < 500, final


def test_lmtp_all_reject(lmtp_server, make_posternd):
    d = make_posternd(lmtp_server.backend)
    final = transaction(d.port, ["reject1@example.test", "reject2@example.test"],
                        px.make_message())
    assert 500 <= final.code < 600, final


def test_lmtp_unix_socket(tmp_path_factory, make_posternd):
    sockdir = tmp_path_factory.mktemp("lmtpsock")
    px.make_traversable(str(sockdir))        # posternd serves unprivileged (issue 8)
    path = os.path.join(str(sockdir), "lmtp.sock")
    assert len(path) < 100, "socket path too long: %s" % path
    srv = px.AioLmtpServer(path=path).start()
    try:
        d = make_posternd(srv.backend)
        msg = px.make_message(subject="lmtp unix")
        final = transaction(d.port, ["user@example.test", "tempfail@example.test"], msg)
        assert final.code == 451, final
        final = transaction(d.port, ["user@example.test"], msg, sender="u2@client.test")
        assert final.code == 250, final
        assert [a["mail_from"] for a in srv.accepted] == ["lmtp@client.test", "u2@client.test"]
        check_copy(srv.accepted[1]["data"], msg, "user@example.test")
    finally:
        srv.stop()


def test_lmtp_backend_down(workdir, make_posternd):
    d = make_posternd("lmtp:127.0.0.1:%d" % px.free_port(),
                      overrides=["timeouts.backend_connect=2s"])
    res = px.send_message(d.port, px.make_message())
    assert 400 <= res["final"].code < 500, res["final"]


def test_lmtp_via_fault_backend_partial_eod(make_fault_backend, make_posternd):
    """The same rule against the raw-socket LMTP server: per-recipient
    replies 250 + 451 -> the client gets 451."""
    be = make_fault_backend(lmtp=True)
    d = make_posternd("lmtp:" + be.address)
    final = transaction(d.port, ["ok@example.test", "eod-tempfail@example.test"],
                        px.make_message())
    assert final.code == 451, final
    final = transaction(d.port, ["ok@example.test", "ok2@example.test"], px.make_message(),
                        sender="f2@client.test")
    assert final.code == 250, final


def test_lmtp_backend_drops_after_first_reply(make_fault_backend, make_posternd):
    """The LMTP server answers for the first recipient only, then drops the
    connection: the client must not get 250 (the second recipient's copy is
    not confirmed)."""
    be = make_fault_backend(lmtp=True)
    d = make_posternd("lmtp:" + be.address, overrides=["timeouts.backend_data=2s"])
    final = transaction(d.port, ["ok@example.test", "lmtp-short@example.test"],
                        px.make_message())
    assert 400 <= final.code < 500, final
