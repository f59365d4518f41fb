"""f. Configuration: `posternd -t` reports errors as FILE:LINE: and exits 1,
accepts a valid file with 0; conf.d/*.conf and -o override the file (shown
through behaviour)."""

import os
import re

import pxtest as px

UNTRUSTED = "trusted_networks=192.0.2.0/24"


def valid_conf(workdir, backend_port=25, extra=""):
    spool = os.path.join(str(workdir), "spool")
    os.makedirs(spool, exist_ok=True)
    return ('hostname = "mx.test"\n'
            'listen = {"127.0.0.1:%d"}\n'
            'backend = "smtp:127.0.0.1:%d"\n'
            'relay_domains = {"example.test"}\n'
            'spool_dir = "%s"\n'
            'log_level = "debug"\n'
            'workers = 2\n'
            'limits {\n    message_size_max = 10M\n    recipients_max = 100\n}\n'
            'timeouts {\n    command = 5m\n    backend_command = 2s\n}\n'
            % (px.free_port(), backend_port, spool)) + extra


def write(path, text):
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(str(path), "w") as f:
        f.write(text)
    return str(path)


def test_valid_config_exits_0(posternd_bin, workdir):
    conf = write(workdir / "postern.conf", valid_conf(workdir))
    r = px.run_check(posternd_bin, conf)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)


def test_unknown_key_reports_file_and_line(posternd_bin, workdir):
    text = valid_conf(workdir)
    lines = text.splitlines()
    lines.insert(3, "no_such_key = 1")        # line 4
    conf = write(workdir / "postern.conf", "\n".join(lines) + "\n")
    r = px.run_check(posternd_bin, conf)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert re.search(r"^%s:4: " % re.escape(conf), r.stderr, re.M), r.stderr


def test_bad_value_reports_file_and_line(posternd_bin, workdir):
    text = valid_conf(workdir).replace("workers = 2", 'workers = "many"')
    conf = write(workdir / "postern.conf", text)
    line = text.splitlines().index('workers = "many"') + 1
    r = px.run_check(posternd_bin, conf)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert re.search(r"^%s:%d: " % (re.escape(conf), line), r.stderr, re.M), r.stderr


def test_bad_size_in_section_reports_file_and_line(posternd_bin, workdir):
    text = valid_conf(workdir).replace("message_size_max = 10M", "message_size_max = 10Q")
    conf = write(workdir / "postern.conf", text)
    line = text.splitlines().index("    message_size_max = 10Q") + 1
    r = px.run_check(posternd_bin, conf)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert re.search(r"^%s:%d: " % (re.escape(conf), line), r.stderr, re.M), r.stderr


def test_error_in_conf_d_names_that_file(posternd_bin, workdir):
    conf = write(workdir / "postern.conf", valid_conf(workdir))
    write(workdir / "conf.d" / "10-good.conf", 'log_level = "info"\n')
    bad = write(workdir / "conf.d" / "50-bad.conf", "# comment\nbogus_option = 3\n")
    r = px.run_check(posternd_bin, conf)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert re.search(r"^%s:2: " % re.escape(bad), r.stderr, re.M), r.stderr


def test_unknown_override_fails(posternd_bin, workdir):
    conf = write(workdir / "postern.conf", valid_conf(workdir))
    r = px.run_check(posternd_bin, conf, overrides=["no_such_key=1"])
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "no_such_key" in r.stderr, r.stderr
    r = px.run_check(posternd_bin, conf, overrides=["limits.no_such_limit=1"])
    assert r.returncode == 1, (r.returncode, r.stderr)


def test_missing_file_fails(posternd_bin, workdir):
    r = px.run_check(posternd_bin, str(workdir / "nonexistent.conf"))
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert r.stderr.strip(), "no message for a missing file"


def test_override_beats_file(sink, make_posternd):
    """relay_domains in the file is example.test; -o makes it other.test."""
    d = make_posternd("smtp:" + sink.address, settings={"relay_domains": ["example.test"]},
                      overrides=[UNTRUSTED, "relay_domains=other.test"])
    with px.SmtpClient(d.port) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd("MAIL FROM:<o@client.test>").code == 250
        r1 = c.cmd("RCPT TO:<user@example.test>")
        r2 = c.cmd("RCPT TO:<user@other.test>")
        c.quit()
    assert r1.code == 554, r1
    assert r2.code == 250, r2


def test_override_list_and_section(sink, make_posternd):
    """A comma-separated -o list, and section.key=value."""
    d = make_posternd("smtp:" + sink.address, settings={"relay_domains": ["example.test"]},
                      overrides=[UNTRUSTED, "relay_domains=a.test,b.test",
                                 "limits.recipients_max=2"])
    with px.SmtpClient(d.port) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd("MAIL FROM:<l@client.test>").code == 250
        r = [c.cmd("RCPT TO:<%s>" % a) for a in
             ("x@a.test", "x@b.test", "y@a.test", "x@example.test")]
        c.quit()
    assert r[0].code == 250 and r[1].code == 250, r
    assert 400 <= r[2].code < 600, "recipients_max=2 not applied: %s" % r[2]
    assert r[3].code >= 400, r[3]


def test_conf_d_overrides_file_and_o_overrides_conf_d(sink, make_posternd):
    d = make_posternd("smtp:" + sink.address, settings={"relay_domains": ["example.test"]},
                      overrides=[UNTRUSTED], start=False)
    write(os.path.join(d.workdir, "conf.d", "20-relay.conf"), 'relay_domains = {"confd.test"}\n')
    d.start()
    rr = []
    with px.SmtpClient(d.port) as c:
        c.greeting()
        c.ehlo()
        c.cmd("MAIL FROM:<cd@client.test>")
        rr = [c.cmd("RCPT TO:<u@confd.test>"), c.cmd("RCPT TO:<u@example.test>")]
        c.quit()
    assert [r.code for r in rr] == [250, 554], rr
    d.stop()
    d2 = make_posternd("smtp:" + sink.address, settings={"relay_domains": ["example.test"]},
                       overrides=[UNTRUSTED, "relay_domains=cli.test"], start=False)
    write(os.path.join(d2.workdir, "conf.d", "20-relay.conf"), 'relay_domains = {"confd.test"}\n')
    d2.start()
    with px.SmtpClient(d2.port) as c:
        c.greeting()
        c.ehlo()
        c.cmd("MAIL FROM:<cd2@client.test>")
        rr = [c.cmd("RCPT TO:<u@cli.test>"), c.cmd("RCPT TO:<u@confd.test>")]
        c.quit()
    assert [r.code for r in rr] == [250, 554], rr


def test_check_mode_does_not_listen(posternd_bin, workdir):
    port = px.free_port()
    text = re.sub(r'listen = \{"127.0.0.1:\d+"\}', 'listen = {"127.0.0.1:%d"}' % port,
                  valid_conf(workdir))
    conf = write(workdir / "postern.conf", text)
    r = px.run_check(posternd_bin, conf)
    assert r.returncode == 0, r.stderr
    assert not px.port_accepts(port)


def test_bad_override_values_fail(posternd_bin, workdir):
    conf = write(workdir / "postern.conf", valid_conf(workdir))
    for o in (["limits.recipients_max=abc"], ["timeouts.command=soon"],
              ["no_section.key=1"], ["workers"]):
        r = px.run_check(posternd_bin, conf, overrides=o)
        assert r.returncode == 1, (o, r.returncode, r.stderr)
        assert r.stderr.strip(), "no message for -o %s" % o


def test_unknown_command_line_option(posternd_bin, workdir):
    conf = write(workdir / "postern.conf", valid_conf(workdir))
    import subprocess
    r = subprocess.run([posternd_bin, "-c", conf, "-t", "--no-such-option"],
                       capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert r.returncode != 0, r
    assert r.stderr.strip(), "no usage message"


def test_listen_address_in_use(posternd_bin, workdir):
    """The listen port is taken: posternd exits non-zero (bounded wait) and
    says which address."""
    import socket
    import subprocess
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        text = re.sub(r'listen = \{"127.0.0.1:\d+"\}', 'listen = {"127.0.0.1:%d"}' % port,
                      valid_conf(workdir))
        conf = write(workdir / "postern.conf", text)
        try:
            r = subprocess.run([posternd_bin, "-f", "-c", conf], capture_output=True,
                               text=True, timeout=20, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise AssertionError("posternd kept running with its listen port taken")
        assert r.returncode != 0, r
        assert str(port) in r.stderr, r.stderr
    finally:
        holder.close()
