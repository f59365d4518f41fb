"""p2. Purpose-built bad plugins (tests/plugins/) are refused or contained
(issue 4, must-show 2): a wrong ABI major, a newer minor, a missing symbol
and a file writable by others are refused at start with a clear message
(posternd -t, posternd, postern check: exit 1); a hook that sleeps past its
budget, or returns an invalid verdict, gets the plugin's on_error and the
session goes on. Also: PX_PENDING + resume(), a plugin's own reply, option
errors with file:line, and chain order = order of appearance in conf.d."""

import os
import re
import shutil
import subprocess
import time

import pytest

import pxtest as px

START_BOUND = 30


def setup_conf(make_posternd, backend, files, overrides=()):
    """A posternd (not started) with conf.d files; returns it."""
    d = make_posternd(backend, start=False, overrides=overrides)
    for name, text in files.items():
        px.write_conf_d(d, name, text)
    d.write_config()
    return d


def start_must_fail(d):
    """posternd -f with this config must exit 1 (bounded), before listening."""
    r = subprocess.run(d.argv("-f"), capture_output=True, text=True, timeout=START_BOUND,
                       stdin=subprocess.DEVNULL, cwd=d.workdir)
    assert not px.port_accepts(d.port)
    return r


def names_plugin(stderr, name, path, why):
    """A line of stderr names the plugin (its title and its file) and says
    why (a regex): e.g. "plugin 'badmajor' (/x/badmajor.so): ABI 2.0 is not
    compatible with this host's ABI 1.1"."""
    for line in stderr.splitlines():
        if ("plugin '%s'" % name) in line and path in line and re.search(why, line):
            return True
    return False


def host_abi():
    """PX_ABI_MAJOR and PX_ABI_MINOR of the public header the host was built with."""
    src = os.environ.get("TOP_SRCDIR", os.path.join(os.path.dirname(__file__), "..", ".."))
    with open(os.path.join(src, "include", "postern", "plugin.h")) as f:
        text = f.read()
    return tuple(int(re.search(r"#define PX_ABI_%s (\d+)" % k, text).group(1))
                 for k in ("MAJOR", "MINOR"))


MAJOR, MINOR = host_abi()
HOST = r"this host's ABI %d\.%d" % (MAJOR, MINOR)
ABI_CASES = [
    ("badmajor", r"ABI %d\.0 is not compatible with %s" % (MAJOR + 1, HOST)),
    ("newminor", r"ABI %d\.%d is not compatible with %s" % (MAJOR, MINOR + 1, HOST)),
    ("nosymbol", r"does not export px_plugin"),
]


@pytest.mark.parametrize("name,why", ABI_CASES, ids=[c[0] for c in ABI_CASES])
def test_refused_at_start(name, why, plugin, posternd_bin, make_posternd):
    so = plugin(name)
    d = setup_conf(make_posternd, "smtp:127.0.0.1:25",
                   {"50-%s.conf" % name: px.plugin_section(name, path=so)})
    r = px.run_check(posternd_bin, d.conf)
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert names_plugin(r.stderr, name, so, why), "posternd -t: %r does not say %r" % (
        r.stderr, why)
    r = start_must_fail(d)
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert names_plugin(r.stderr, name, so, why), "posternd: %r does not say %r" % (
        r.stderr, why)


@pytest.mark.parametrize("name,why", ABI_CASES, ids=[c[0] for c in ABI_CASES])
def test_refused_by_postern_check(name, why, plugin, postern_bin, make_posternd):
    so = plugin(name)
    d = setup_conf(make_posternd, "smtp:127.0.0.1:25",
                   {"50-%s.conf" % name: px.plugin_section(name, path=so)})
    r = px.run_postern_check(postern_bin, d.conf)
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert names_plugin(r.stderr, name, so, why), r.stderr


def test_world_writable_refused(plugin, posternd_bin, make_posternd, workdir):
    so = str(workdir / "example.so")
    shutil.copyfile(plugin("example"), so)
    os.chmod(so, 0o666)
    d = setup_conf(make_posternd, "smtp:127.0.0.1:25",
                   {"50-example.conf": px.plugin_section("example", path=so)})
    r = px.run_check(posternd_bin, d.conf)
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert names_plugin(r.stderr, "example", so, r"is writable by others"), r.stderr
    r = start_must_fail(d)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert names_plugin(r.stderr, "example", so, r"is writable by others"), r.stderr
    # the same file, mode 0755, loads
    os.chmod(so, 0o755)
    r = px.run_check(posternd_bin, d.conf)
    assert r.returncode == 0, (r.returncode, r.stderr)


def test_missing_file_refused(posternd_bin, make_posternd, workdir):
    so = str(workdir / "nothere.so")
    d = setup_conf(make_posternd, "smtp:127.0.0.1:25",
                   {"50-nothere.conf": px.plugin_section("nothere", path=so)})
    r = px.run_check(posternd_bin, d.conf)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "nothere" in r.stderr and so in r.stderr, r.stderr


# ---- options: errors carry file:line; configure() failures are reported --

def test_unknown_plugin_option_file_line(plugin, posternd_bin, make_posternd):
    text = px.plugin_section("example", path=plugin("example"), no_such_option="1")
    d = setup_conf(make_posternd, "smtp:127.0.0.1:25", {"50-example.conf": text})
    conf_d = os.path.join(os.path.dirname(d.conf), "conf.d", "50-example.conf")
    line = text.splitlines().index('    no_such_option = "1"') + 1
    r = px.run_check(posternd_bin, d.conf)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert re.search(r"^%s:%d: .*no_such_option" % (re.escape(conf_d), line), r.stderr, re.M), \
        r.stderr


def test_bad_plugin_option_value_file_line(plugin, posternd_bin, make_posternd):
    text = "# size with a bad unit\n" + px.plugin_section("example", path=plugin("example"),
                                                         max_size="10Q")
    d = setup_conf(make_posternd, "smtp:127.0.0.1:25", {"50-example.conf": text})
    conf_d = os.path.join(os.path.dirname(d.conf), "conf.d", "50-example.conf")
    line = text.splitlines().index('    max_size = "10Q"') + 1
    r = px.run_check(posternd_bin, d.conf)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert re.search(r"^%s:%d: .*max_size" % (re.escape(conf_d), line), r.stderr, re.M), \
        r.stderr
    # the same error from the command line names the option
    d2 = setup_conf(make_posternd, "smtp:127.0.0.1:25",
                    {"50-example.conf": px.plugin_section("example", path=plugin("example"))},
                    overrides=["example.max_size=lots"])
    r = px.run_check(posternd_bin, d2.conf, overrides=d2.overrides)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "example.max_size" in r.stderr or "max_size" in r.stderr, r.stderr


def test_configure_failure_reported(plugin, posternd_bin, make_posternd):
    """configure() returning -1: the plugin's own message, with the file and
    the line of the plugin's section."""
    text = "# the example plugin\n# with a bad list\n\n" + px.plugin_section(
        "example", path=plugin("example"), reject_senders=["nodomain"])
    d = setup_conf(make_posternd, "smtp:127.0.0.1:25", {"50-example.conf": text})
    conf_d = os.path.join(os.path.dirname(d.conf), "conf.d", "50-example.conf")
    line = text.splitlines().index('plugin "example" {') + 1
    r = px.run_check(posternd_bin, d.conf)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "'nodomain' is neither an address" in r.stderr, r.stderr
    assert re.search(r"^%s:%d: .*example.*'nodomain' is neither" % (re.escape(conf_d), line),
                     r.stderr, re.M), r.stderr


# ---- contained at run time -----------------------------------------------

def sleeper_daemon(plugin, make_posternd, backend, on_error):
    return px.posternd_with_conf_d(
        make_posternd, backend,
        {"50-sleeper.conf": px.plugin_section("sleeper", path=plugin("sleeper"),
                                              timeout="300ms", on_error=on_error,
                                              sleep_ms=4000)})


def test_sleeper_past_budget_tempfail(plugin, sink, make_posternd):
    d = sleeper_daemon(plugin, make_posternd, "smtp:" + sink.address, "tempfail")
    with px.SmtpClient(d.port) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd("MAIL FROM:<sleepy@client.test>").code == 250
        t0 = time.monotonic()
        r = c.cmd("RCPT TO:<user@example.test>")
        took = time.monotonic() - t0
        # the session goes on
        n = c.cmd("NOOP")
        rs = c.cmd("RSET")
        q = c.cmd("QUIT")
    assert r.code == 451 and r.lines[0].startswith("4."), r
    assert took < 3.0, "the RCPT reply waited for the hook (%.1fs), not for its budget" % took
    assert n.code == 250 and rs.code == 250 and q is not None and q.code == 221, (n, rs, q)
    assert d.wait_log(r" plugin name=sleeper stage=rcpt error=timeout action=tempfail")
    assert sink.find(mail_from="sleepy@client.test") == []


def test_sleeper_past_budget_accept(plugin, sink, make_posternd):
    d = sleeper_daemon(plugin, make_posternd, "smtp:" + sink.address, "accept")
    msg = px.make_message()
    with px.SmtpClient(d.port) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd("MAIL FROM:<sleepy2@client.test>").code == 250
        t0 = time.monotonic()
        r = c.cmd("RCPT TO:<user@example.test>")
        took = time.monotonic() - t0
        final = c.data(msg)[1]
        c.quit()
    assert r.code == 250, r
    assert took < 3.0, "the RCPT reply waited for the hook (%.1fs)" % took
    assert final is not None and final.code == 250, final
    assert len(sink.wait_for(1, mail_from="sleepy2@client.test")) == 1
    assert d.wait_log(r" plugin name=sleeper stage=rcpt error=timeout action=accept")


def test_sleeper_does_not_block_other_sessions(plugin, sink, make_posternd):
    """While one session's hook sleeps (and is timed out), other sessions are
    served: the hook runs on the worker pool, not on an I/O thread."""
    d = sleeper_daemon(plugin, make_posternd, "smtp:" + sink.address, "accept")
    clients = []
    try:
        for i in range(3):
            c = px.SmtpClient(d.port)
            clients.append(c)
            c.greeting()
            c.ehlo()
            c.cmd("MAIL FROM:<par%d@client.test>" % i)
            c.send("RCPT TO:<user@example.test>\r\n")     # reply read later
        t0 = time.monotonic()
        with px.SmtpClient(d.port) as o:
            g = o.greeting()
            n = o.ehlo()
            o.quit()
        took = time.monotonic() - t0
        replies = [c.reply() for c in clients]
    finally:
        for c in clients:
            c.close()
    assert g.code == 220 and n.code == 250, (g, n)
    assert took < 2.0, "greeting + EHLO took %.1fs while hooks slept" % took
    assert all(r.code == 250 for r in replies), replies


@pytest.mark.parametrize("on_error", ["tempfail", "accept"])
def test_invalid_verdict(on_error, plugin, sink, make_posternd):
    d = px.posternd_with_conf_d(
        make_posternd, "smtp:" + sink.address,
        {"50-badverdict.conf": px.plugin_section("badverdict", path=plugin("badverdict"),
                                                 on_error=on_error)})
    sender = "bv-%s@client.test" % on_error
    res = px.send_message(d.port, px.make_message(), mail_from=sender)
    if on_error == "tempfail":
        assert res["mail"].code == 451 and res["mail"].lines[0].startswith("4."), res["mail"]
        assert sink.find(mail_from=sender) == []
    else:
        assert res["mail"].code == 250, res["mail"]
        assert res["final"].code == 250, res["final"]
        assert len(sink.wait_for(1, mail_from=sender)) == 1
    assert d.wait_log(r" plugin name=badverdict stage=mail error=invalid-verdict action=%s"
                      % on_error)


def test_on_error_defaults_to_tempfail(plugin, sink, make_posternd):
    d = px.posternd_with_conf_d(
        make_posternd, "smtp:" + sink.address,
        {"50-badverdict.conf": px.plugin_section("badverdict", path=plugin("badverdict"))})
    res = px.send_message(d.port, px.make_message(), mail_from="bvdef@client.test")
    assert res["mail"].code == 451, res["mail"]


def test_plugin_reply_text(plugin, sink, make_posternd):
    d = px.posternd_with_conf_d(
        make_posternd, "smtp:" + sink.address,
        {"50-tempfailer.conf": px.plugin_section("tempfailer", path=plugin("tempfailer"))})
    with px.SmtpClient(d.port) as c:
        c.greeting()
        c.ehlo()
        c.cmd("MAIL FROM:<grey@client.test>")
        r = c.cmd("RCPT TO:<user@example.test>")
        c.quit()
    assert r.first == "451 4.7.1 greylisted (test)", r
    assert d.wait_log(r" plugin name=tempfailer stage=rcpt verdict=tempfail ms=\d+")


PENDING_CASES = [("next", 300, 250), ("accept", 300, 250), ("reject", 300, 550),
                 ("tempfail", 300, 451),
                 # resume() called at once, maybe before the hook has returned
                 ("reject", 0, 550), ("next", 0, 250)]


@pytest.mark.parametrize("verdict,delay,code", PENDING_CASES,
                         ids=["%s-%dms" % c[:2] for c in PENDING_CASES])
def test_pending_resumed_from_another_thread(verdict, delay, code, plugin, sink, make_posternd):
    d = px.posternd_with_conf_d(
        make_posternd, "smtp:" + sink.address,
        {"50-pending.conf": px.plugin_section("pending", path=plugin("pending"),
                                              verdict=verdict, delay_ms=delay)})
    sender = "pend-%s-%d@client.test" % (verdict, delay)
    t0 = time.monotonic()
    res = px.send_message(d.port, px.make_message(), mail_from=sender)
    took = time.monotonic() - t0
    r = res["rcpt"][0]
    assert r.code == code, r
    if code == 550:
        assert r.lines[0].startswith("5.7.1"), r
    if code == 451:
        assert r.lines[0].startswith("4.7.1"), r
    assert took >= delay / 1000.0, "RCPT answered before the plugin resumed (%.2fs)" % took
    if code == 250:
        assert res["final"].code == 250, res
        assert len(sink.wait_for(1, mail_from=sender)) == 1
    else:
        assert sink.find(mail_from=sender) == []
    assert d.wait_log(r" plugin name=pending stage=rcpt verdict=%s ms=\d+" % verdict)


def test_pending_past_budget_then_late_resume(plugin, sink, make_posternd):
    """A pending hook that resumes after its budget: on_error applies at the
    budget, the late resume() is ignored, and posternd stays up."""
    d = px.posternd_with_conf_d(
        make_posternd, "smtp:" + sink.address,
        {"50-pending.conf": px.plugin_section("pending", path=plugin("pending"),
                                              verdict="reject", delay_ms=1500,
                                              timeout="300ms", on_error="accept")})
    msg = px.make_message()
    with px.SmtpClient(d.port) as c:
        c.greeting()
        c.ehlo()
        c.cmd("MAIL FROM:<late@client.test>")
        t0 = time.monotonic()
        r = c.cmd("RCPT TO:<user@example.test>")
        took = time.monotonic() - t0
        time.sleep(2.0)                       # the late resume() happens here
        final = c.data(msg)[1]
        c.quit()
    assert r.code == 250 and took < 1.4, (r, took)
    assert final is not None and final.code == 250, final
    assert d.wait_log(r" plugin name=pending stage=rcpt error=timeout action=accept")
    # a session that ends while its hook is pending does not crash posternd
    with px.SmtpClient(d.port) as c:
        c.greeting()
        c.ehlo()
        c.cmd("MAIL FROM:<gone@client.test>")
        c.send("RCPT TO:<user@example.test>\r\n")
    time.sleep(2.0)
    assert d.alive(), "posternd died after a late resume()"
    res = px.send_message(d.port, msg, mail_from="after@client.test")
    assert res["final"].code == 250, res


# ---- chain order ------------------------------------------------------------

def test_chain_order_is_order_of_appearance(plugin, sink, make_posternd):
    """The first non-next verdict ends a stage: with pending (reject) first,
    RCPT gets 550; with tempfailer first, 451 greylisted. Order follows the
    order in which sections appear across conf.d files, not the titles."""
    pend = px.plugin_section("pending", path=plugin("pending"), verdict="reject", delay_ms=50)
    temp = px.plugin_section("tempfailer", path=plugin("tempfailer"))
    for first, second, want in ((pend, temp, "550"), (temp, pend, "451 4.7.1 greylisted")):
        d = px.posternd_with_conf_d(make_posternd, "smtp:" + sink.address,
                                    {"10-a.conf": first, "20-b.conf": second})
        with px.SmtpClient(d.port) as c:
            c.greeting()
            c.ehlo()
            c.cmd("MAIL FROM:<order@client.test>")
            r = c.cmd("RCPT TO:<user@example.test>")
            c.quit()
        assert r.first.startswith(want), (want, r)
        d.stop()
