"""g. The maildir backend: after a 250 the message is in DIR/new/ (written
through tmp/, which is left empty), Postern's Received on top of the bytes
sent."""

import os

import pxtest as px


def maildir(workdir, name="Maildir"):
    """A maildir posternd can write: started as root it serves as an
    unprivileged user (issue 8)."""
    d = os.path.join(str(workdir), name)
    for sub in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    for p in (d,) + tuple(os.path.join(d, sub) for sub in ("tmp", "new", "cur")):
        os.chmod(p, 0o777)
    return d


def read_new(md):
    out = []
    for n in sorted(os.listdir(os.path.join(md, "new"))):
        with open(os.path.join(md, "new", n), "rb") as f:
            out.append((n, f.read()))
    return out


def check_copy(content, sent, rcpt="user@example.test"):
    """The maildir file: possibly delivery headers a maildir writer adds
    (Return-Path, Delivered-To), then Postern's Received, then exactly the
    message (CRLF-normalised comparison)."""
    c = px.normalise(content)
    want = px.normalise(sent)
    assert c.endswith(want), "message altered in the maildir copy"
    head = c[:len(c) - len(want)]
    fields = []
    for _ in range(20):
        if not head:
            break
        f, head = px.pop_header_field(head)
        assert f, "unparseable header before the message: %r" % head
        fields.append(f)
    rec = [f for f in fields if f.startswith(b"Received:")]
    assert len(rec) == 1, fields
    assert fields[-1] == rec[0], "Postern's Received is not right above the message: %r" % fields
    p = px.parse_postern_received(rec[0])
    assert p["for"] == rcpt, p
    for f in fields[:-1]:
        assert f.split(b":", 1)[0].lower() in (b"return-path", b"delivered-to", b"x-original-to"), f


def test_maildir_delivery(workdir, make_posternd):
    md = maildir(workdir)
    d = make_posternd("maildir:" + md)
    msgs = [px.make_message(subject="maildir %d" % i,
                            body=b"line\r\n.dot\r\n\r\nend %d\r\n" % i) for i in range(5)]
    for i, m in enumerate(msgs):
        res = px.send_message(d.port, m, mail_from="md%d@client.test" % i)
        assert res["final"].code == 250, res["final"]
        # at the moment of the 250 it is already in new/
        assert len(os.listdir(os.path.join(md, "new"))) == i + 1
    assert os.listdir(os.path.join(md, "tmp")) == []
    files = read_new(md)
    assert len(files) == 5
    assert len(set(n for n, _ in files)) == 5
    by_subject = {}
    for n, content in files:
        for i, m in enumerate(msgs):
            if px.normalise(content).endswith(px.normalise(m)):
                by_subject[i] = content
    assert sorted(by_subject) == list(range(5)), "not every message found in new/"
    for i, content in by_subject.items():
        check_copy(content, msgs[i])


def test_maildir_set_with_override(workdir, make_posternd):
    """-o backend=maildir:DIR overrides the file's backend."""
    md = maildir(workdir, "Over")
    dead = px.free_port()
    d = make_posternd("smtp:127.0.0.1:%d" % dead, overrides=["backend=maildir:" + md])
    m = px.make_message(subject="override")
    res = px.send_message(d.port, m)
    assert res["final"].code == 250, res["final"]
    files = read_new(md)
    assert len(files) == 1
    check_copy(files[0][1], m)
    assert os.listdir(os.path.join(md, "tmp")) == []


def test_maildir_unwritable_gives_4xx(workdir, make_posternd):
    """tmp/ of the maildir is replaced by a plain file while posternd runs,
    so no message can be written: 4xx, never 250, nothing in new/."""
    md = maildir(workdir, "Broken")
    d = make_posternd("maildir:" + md)
    os.rmdir(os.path.join(md, "tmp"))
    with open(os.path.join(md, "tmp"), "w") as f:
        f.write("not a directory\n")
    res = px.send_message(d.port, px.make_message())
    assert 400 <= res["final"].code < 500, res["final"]
    assert res["final"].lines[0].startswith("4."), res["final"]
    assert os.listdir(os.path.join(md, "new")) == []
