"""t7. Privileges (issue 3, must-show 8): started as root, posternd binds a
privileged port, then serves as the configured user and group, checked in
/proc/PID/status; its spool directory is private to that user."""

import grp
import os
import pwd
import socket

import pytest

import pxtest as px


def free_low_port():
    """A free port below 1024 (binding it needs root)."""
    for port in range(1020, 600, -1):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((px.HOST, port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    pytest.fail("no free port below 1024")


def proc_ids(pid):
    ids = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("Uid", "Gid", "Groups"):
                ids[key] = [int(x) for x in value.split()]
    return ids


def test_serves_as_configured_user(sink, make_posternd):
    assert os.geteuid() == 0, "this test starts posternd as root"
    nobody = pwd.getpwnam("nobody")
    nogroup = grp.getgrnam("nogroup")
    port = free_low_port()
    d = make_posternd("smtp:" + sink.address, port=port,
                      settings={"user": "nobody", "group": "nogroup",
                                "limits": {"spool_memory_max": 0}})   # spool on disk
    d.wait_log(r"privileges user=nobody ")   # the port accepts before the change
    ids = proc_ids(d.proc.pid)
    assert ids["Uid"] == [nobody.pw_uid] * 4, ids
    assert ids["Gid"] == [nogroup.gr_gid] * 4, ids
    assert ids["Groups"] == [nogroup.gr_gid], ids
    st = os.stat(d.spool)
    assert (st.st_uid, st.st_mode & 0o777) == (nobody.pw_uid, 0o700)
    assert d.wait_log(r"privileges user=nobody uid=%d gid=%d" % (nobody.pw_uid, nogroup.gr_gid))
    # and it serves, writing its spool file as that user
    res = px.send_message(port, px.make_message(), mail_from="privs@client.test")
    assert res["final"].code == 250, res["final"]
    assert len(sink.wait_for(1, mail_from="privs@client.test")) == 1


def test_unknown_user_refuses_to_start(sink, posternd_bin, tmp_path):
    p = px.Posternd(posternd_bin, tmp_path, "smtp:" + sink.address,
                    settings={"user": "no-such-user-postern"})
    p.write_config()
    r = px.subprocess.run(p.argv("-f"), capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert "no such user" in r.stderr, r.stderr
