"""z2. postern-milter driven by miltertest as Sendmail would (issue 12,
must-show 3).

Debian's miltertest plays the MTA from the Lua scripts of tests/milter/
(one per verdict: pass, DMARC reject, greylisting, quarantine, virus,
discard, tempfail, a plugin over its budget, a denied client), with client
addresses that SPF and greylisting care about; each script checks the
reply of every step and the actions at end of message (inserted and
deleted header fields, quarantine, the SMTP reply). The milter runs the
chain of pxmilter.chain_files, with the sleeper test plugin for RCPTs to
slow.test (budget 1 s), a deny list, and one extra rule,
"dmarc-policy=none discard". Its log carries the MTA's queue id (the i
macro) on its lines.
"""

import os
import subprocess

import pytest

import clamtest as ct
import dkimtest as dk
import pxmilter as pm
import pxtest as px
from dnsserver import DNSServer

SCRIPTS = os.path.join(px.top_srcdir(), "tests", "milter")


@pytest.fixture(scope="module")
def milter(tmp_path_factory):
    top = tmp_path_factory.mktemp("mt")
    px.make_traversable(str(top))
    key = dk.make_key(str(top), "s1")
    import pwd
    nobody = pwd.getpwnam("nobody")     # the user it serves as: a reload reads the key
    os.chown(key.path, nobody.pw_uid, nobody.pw_gid)
    with DNSServer(dict(pm.records(key), **pm.EXTRA), servfail=pm.SERVFAIL) as dns:
        dbdir = ct.build_db(os.path.join(str(top), "db"))
        px.make_traversable(dbdir)
        clamtmp = os.path.join(str(top), "clamtmp")
        os.mkdir(clamtmp)
        os.chmod(clamtmp, 0o1777)
        s = pm.settings(dns)
        s["policy"]["actions"].append("dmarc-policy=none discard")
        s["deny"] = {"networks": ["198.18.0.0/15"]}
        s['override "fast"'] = {"recipient_domains": ["example.test"], "skip": ["sleeper"]}
        m = pm.PosternMilter(os.path.join(str(top), "m"), settings=s)
        m.write_config()
        files = pm.chain_files(px.find_plugin, key, dbdir, clamtmp)
        files["60-sleeper.conf"] = px.plugin_section("sleeper", path=px.find_plugin("sleeper"),
                                                     timeout="1s", sleep_ms=3000)
        pm.write_conf_d(m, files)
        m.start()
        try:
            yield m
        finally:
            m.stop()
            assert not m.sanitizer_reports(), m.sanitizer_reports()


def run_script(milter, name):
    r = subprocess.run([px.require("miltertest"), "-D", "port=%d" % milter.port,
                        "-D", "dir=%s" % SCRIPTS, "-s", os.path.join(SCRIPTS, name)],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    out = r.stdout + r.stderr
    assert r.returncode == 0 and "FAILED" not in out, "%s:\n%s\n--- milter log ---\n%s" % (
        name, out, milter.log()[-4000:])
    return out


@pytest.mark.parametrize("script", sorted(n for n in os.listdir(SCRIPTS)
                                          if n.startswith("t-") and n.endswith(".lua")))
def test_3_miltertest_script(milter, script):
    out = run_script(milter, script)
    assert "ok " in out, out


def test_3_queue_id_and_client_in_the_log(milter):
    run_script(milter, "t-pass.lua")
    lines = milter.grep(r"milter message queue_id=QPASS1 ")
    assert lines and "client=192.0.2.10" in lines[-1] and "action=accept" in lines[-1], lines
    rej = milter.grep(r"milter refuse stage=data-end by=dmarc .*queue_id=QREJ1")
    if not rej:
        run_script(milter, "t-dmarc-reject.lua")
        rej = milter.grep(r"milter refuse stage=data-end by=dmarc .*queue_id=QREJ1")
    assert rej, milter.log()[-3000:]
    assert milter.grep(r"milter connect client=192\.0\.2\.10 .*mta=mta\.example daemon=smtpd")


def test_3_sigusr1_reloads_and_a_bad_file_keeps_the_old(milter):
    """SIGUSR1: a new generation for new connections; a configuration with an
    error is refused with its reason logged, and the old one goes on."""
    import signal
    milter.proc.send_signal(signal.SIGUSR1)
    assert milter.wait_log(r"milter reload generation=2"), milter.log()[-2000:]
    run_script(milter, "t-pass.lua")
    bad = px.write_conf_d(milter, "99-bad.conf", "no_such_setting = 1\n")
    try:
        milter.proc.send_signal(signal.SIGUSR1)
        assert milter.wait_log(r'milter reload error=".*no_such_setting.*" kept=old'), \
            milter.log()[-2000:]
        run_script(milter, "t-dmarc-reject.lua")
    finally:
        os.unlink(bad)
