"""t9. Safe defaults and one command path (issue 8, must-show 5 and 6).

Started as root with no `user` setting, posternd serves as an
unprivileged user (checked in /proc); user = "root" is needed to stay root,
and is warned about. posternd detaches before it loads its plugins, so a
thread a plugin starts in load() (tests/plugins/witness.c) is alive in the
daemon, and the parent exits with no descriptor of ours left open. XCLIENT
from a trusted front end runs the connect stage for the new client and
moves its connection count; AUTH goes through the command table, its
initial response masked in the debug log and its user name quoted."""

import base64
import os
import pwd
import re
import signal
import subprocess
import time

import pytest

import pxtest as px
import pxtransport as pt

FRONT_END = {"xclient_sources": ["127.0.0.1/32"]}


def default_user():
    """The documented default: postern if that user exists, else nobody."""
    try:
        return pwd.getpwnam("postern")
    except KeyError:
        return pwd.getpwnam("nobody")


def proc_field(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k == key:
                return [int(x) for x in v.split()]
    raise AssertionError("no %s in /proc/%d/status" % (key, pid))


def pids_of(conf):
    """PIDs of posternd processes started with this configuration file."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % name, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if conf.encode() in argv and os.path.basename(argv[0]) == b"posternd":
            out.append(int(name))
    return out


def witness(plugin, **opts):
    return px.plugin_section("witness", path=plugin("witness"), **opts)


def shared_dir(path):
    """A directory the unprivileged daemon may write into."""
    os.makedirs(path, exist_ok=True)
    os.chmod(path, 0o777)
    px.make_traversable(path)
    return path


# ------------------------------------------------------- must-show 6 ---

def test_root_serves_as_unprivileged_default_user(sink, make_posternd):
    assert os.geteuid() == 0, "this test starts posternd as root"
    u = default_user()
    d = make_posternd("smtp:" + sink.address, settings={"user": None, "group": None,
                                                        "limits": {"spool_memory_max": 0}})
    # the port accepts from the bind on; the privileges change comes after
    assert d.wait_log(r"privileges user=%s uid=%d gid=%d default=yes"
                      % (u.pw_name, u.pw_uid, u.pw_gid))
    assert proc_field(d.proc.pid, "Uid") == [u.pw_uid] * 4
    assert proc_field(d.proc.pid, "Gid") == [u.pw_gid] * 4
    st = os.stat(d.spool)
    assert (st.st_uid, st.st_mode & 0o777) == (u.pw_uid, 0o700)
    res = px.send_message(d.port, px.make_message(), mail_from="t9-default@client.test")
    assert res["final"].code == 250, res["final"]
    assert len(sink.wait_for(1, mail_from="t9-default@client.test")) == 1


def test_root_only_when_configured_and_warned(sink, make_posternd):
    assert os.geteuid() == 0, "this test starts posternd as root"
    d = make_posternd("smtp:" + sink.address, settings={"user": "root"})
    assert d.wait_log(r"privileges user=root uid=0 warning=")
    assert d.wait_log(r" start workers=")
    assert proc_field(d.proc.pid, "Uid") == [0] * 4


def sanitizer_env(logdir):
    """The environment for a posternd that detaches: its stderr goes to
    /dev/null, so a sanitized build (CI's ASan and TSan runs set these
    variables) writes its reports into files under logdir instead."""
    env = dict(os.environ)
    for var in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "TSAN_OPTIONS"):
        if var in env:
            env[var] += ":log_path=" + os.path.join(logdir, var.split("_")[0].lower())
    return env


def sanitizer_files(logdir):
    return sorted(n for n in os.listdir(logdir)
                  if n.split(".")[0] in ("asan", "ubsan", "tsan"))


def test_plugin_thread_alive_after_daemonizing(sink, make_posternd, plugin, tmp_path):
    """posternd without -f: the parent returns (its stdout and stderr, our
    pipes, reach end of file: nothing of the daemon holds them), the
    daemon serves unprivileged, and the thread witness started in load()
    still beats in the daemon's process and answers its connect hook."""
    assert os.geteuid() == 0, "this test starts posternd as root"
    beat = os.path.join(shared_dir(str(tmp_path / "beat")), "heartbeat")
    san = shared_dir(str(tmp_path / "san"))
    d = make_posternd("smtp:" + sink.address, start=False, settings={"user": None})
    px.write_conf_d(d, "50-witness.conf", witness(plugin, heartbeat=beat))
    d.write_config()
    pids = []
    try:
        r = subprocess.run(d.argv(), stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=30, cwd=d.workdir, env=sanitizer_env(san))
        assert r.returncode == 0, r
        pids = px.wait_until(lambda: pids_of(d.conf), px.START_WAIT, "the daemon's pid")
        assert len(pids) == 1, pids
        pid = pids[0]
        assert proc_field(pid, "Uid") == [default_user().pw_uid] * 4
        assert os.getsid(pid) == pid, "the daemon leads its own session"
        px.wait_until(lambda: px.port_accepts(d.port), px.START_WAIT, "the daemon's port")

        def beats():
            try:
                with open(beat) as f:
                    kv = px.parse_kv(f.read())
                return int(kv["beats"]), int(kv["pid"])
            except (OSError, KeyError, ValueError):
                return None
        first = px.wait_until(beats, px.START_WAIT, "a heartbeat")
        assert first[1] == pid, (first, pid)       # the thread runs in the daemon
        px.wait_until(lambda: (beats() or (0, 0))[0] > first[0] + 2, px.START_WAIT,
                      "the heartbeat going on")
        with px.SmtpClient(d.port) as c:           # the hook waits for the thread
            assert c.greeting().code == 220
            assert c.quit().code == 221
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGTERM)
        end = time.time() + px.STOP_WAIT
        while pids_of(d.conf) and time.time() < end:
            time.sleep(0.05)
        for pid in pids_of(d.conf):
            os.kill(pid, signal.SIGKILL)
    reports = sanitizer_files(san)
    assert not reports, [open(os.path.join(san, n)).read()[:2000] for n in reports]


def test_detached_start_error_reaches_the_terminal(sink, posternd_bin, tmp_path):
    """Detached, a start-up error is still printed and the status is 1."""
    p = px.Posternd(posternd_bin, tmp_path, "smtp:" + sink.address,
                    settings={"user": "no-such-user-postern"})
    p.write_config()
    r = subprocess.run(p.argv(), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 1, r
    assert "no such user" in r.stderr, r.stderr
    assert not pids_of(p.conf)


def test_postern_options_after_the_command(postern_bin, sink, posternd_bin, tmp_path):
    p = px.Posternd(posternd_bin, tmp_path, "smtp:" + sink.address,
                    settings={"hostname": "t9.test"})
    p.write_config()
    before = subprocess.run([postern_bin, "-c", p.conf, "-o", "log_level=info", "check"],
                            capture_output=True, text=True, timeout=30)
    after = subprocess.run([postern_bin, "check", "-c", p.conf, "-o", "log_level=info"],
                           capture_output=True, text=True, timeout=30)
    assert before.returncode == 0 and after.returncode == 0, (before, after)
    assert "hostname = t9.test" in after.stdout
    assert after.stdout == before.stdout
    r = subprocess.run([postern_bin, "test", "-c", p.conf, "--client-ip", "192.0.2.7",
                        "--from", "a@client.test", "--rcpt", "user@example.test"],
                       input=px.make_message().decode(), capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0 and "action=accept" in r.stdout, r


# ------------------------------------------------------- must-show 5 ---

def test_xclient_runs_connect_stage_for_the_real_client(sink, make_posternd, plugin):
    d = px.posternd_with_conf_d(make_posternd, "smtp:" + sink.address,
                                {"50-witness.conf": witness(plugin)}, settings=FRONT_END)
    with px.SmtpClient(d.port) as c:
        assert c.greeting().code == 220
        c.ehlo("frontend.test")
        r = c.cmd("XCLIENT ADDR=192.0.2.44 NAME=mail.example.net")
        assert r.code == 220, r
        assert c.ehlo("orig.example.net").code == 250
        c.quit()
    xc = d.wait_log(r" xclient client=192\.0\.2\.44 ")
    assert xc, d.log()[-3000:]
    sid = px.LOG_RE.match(xc[0]).group(2)
    seen = [l for l in d.grep(r" plugin=witness connect ") if px.LOG_RE.match(l).group(2) == sid]
    assert len(seen) == 2, seen       # before XCLIENT: the front end; after: the client
    assert "client.addr=127.0.0.1 " in seen[0], seen
    assert "client.addr=192.0.2.44 client.name=mail.example.net" in seen[1], seen


def test_xclient_moves_the_connection_count(sink, make_posternd):
    """connections_per_client_max = 2, all from the front end 127.0.0.1:
    each XCLIENT moves its session's count to the real client, so the
    front end opens session after session; the real client's third is
    refused. (One at a time: the start-up probe may still count.)"""
    d = make_posternd("smtp:" + sink.address,
                      settings=dict(FRONT_END, limits={"connections_per_client_max": 2}))
    with px.SmtpClient(d.port) as a:
        assert a.greeting().code == 220
        assert a.cmd("XCLIENT ADDR=192.0.2.45").code == 220
        with px.SmtpClient(d.port) as b:
            assert b.greeting().code == 220
            assert b.cmd("XCLIENT ADDR=192.0.2.45").code == 220
            with px.SmtpClient(d.port) as c:        # 127.0.0.1 counts one: c
                assert c.greeting().code == 220
                r = c.cmd("XCLIENT ADDR=192.0.2.45")
                assert r.code == 421 and r.lines[0].startswith("4.7.0"), r
            assert a.cmd("XCLIENT ADDR=192.0.2.46").code == 220   # .45 counts one now
            assert b.cmd("XCLIENT ADDR=192.0.2.45").code == 220   # .45 -> .45: no change
            with px.SmtpClient(d.port) as c:
                assert c.greeting().code == 220
                assert c.cmd("XCLIENT ADDR=192.0.2.45").code == 220
    assert d.wait_log(r"reject reason=xclient client=192\.0\.2\.45 error=\"too many")


def plain(user, password):
    return base64.b64encode(b"\0" + user + b"\0" + password).decode()


def test_auth_user_quoted_and_arguments_masked(sink, make_posternd, workdir):
    accounts = pt.AuthBackend({"alice": "s3cret"}).start()
    try:
        cert, key = pt.make_cert(workdir / "certs", "mx.test")
        port = px.free_port()
        d = make_posternd("smtp:" + sink.address, port=port, settings={
            "listen": [],
            'listener "submission"': {"address": "127.0.0.1:%d" % port, "auth": True},
            "tls": {"certificate": [cert], "key": [key]},
            "auth": {"backend": "smtp:" + accounts.address},
        })
        forged = b"evil\r\n0123456789abcdef auth mechanism=PLAIN user=root result=ok"
        initial = plain(forged, b"pw")
        with pt.Client(d.port) as c:
            c.greeting()
            c.ehlo()
            assert c.starttls().code == 220
            c.ehlo()
            r = c.cmd("AUTH PLAIN " + initial)
            assert r.code == 535, r
            r = c.cmd("AUTH LOGIN")
            assert r.code == 334, r
            assert c.cmd(base64.b64encode(b"bob\nforged=yes").decode()).code == 334
            assert c.cmd(base64.b64encode(b"pw").decode()).code == 535
            c.quit()
    finally:
        accounts.stop()
    lines = d.wait_log(r" auth mechanism=PLAIN user=", n=2)
    assert len(lines) == 2, d.log()[-3000:]
    assert 'user="evil\\x0d\\x0a0123456789abcdef auth mechanism=PLAIN user=root ' \
           'result=ok" result=bad' in lines[0], lines
    assert 'user="bob\\x0aforged=yes" result=bad' in lines[1], lines
    assert not d.grep(r"^0123456789abcdef auth") and not d.grep(r"^forged=yes")
    assert not d.grep(r"user=root result=ok\s*$")
    # the command table saw AUTH, but its debug line holds the mechanism only
    assert d.grep(r' command="AUTH PLAIN \*\*\*"'), d.log()[-3000:]
    assert d.grep(r' command="AUTH LOGIN"$'), d.log()[-3000:]
    assert not d.grep(re.escape(initial))
