"""p6. Reload under load (issue 4, must-show 6). While smtp-source runs a
bounded load through posternd:
  1. SIGHUP with a changed conf.d (the example plugin now also refuses
     late@client.test): "reload status=ok generation=2"; new sessions
     refuse late@, a session opened before the reload still accepts it
     (sessions keep their generation);
  2. SIGHUP with a broken conf.d (a syntax error, then a plugin whose
     configure() fails): "reload status=failed keeping=2 errors=..." naming
     file:line, and generation 2 goes on serving.
No session fails: smtp-source exits 0 and the backend counted every message."""

import os
import re
import signal
import subprocess
import time

import pxtest as px

LOAD_FROM = "load@client.test"
LOAD_SESSIONS = 8
LOAD_SECONDS = 6.0          # aim: the load outlasts the reloads comfortably
LOAD_MIN, LOAD_MAX = 400, 20000
LOAD_BOUND = 240            # hard bound on the whole load run


def example_conf(so, senders):
    return "# example plugin, reloaded by the test\n" + px.plugin_section(
        "example", path=so, reject_senders=senders)


def probe_mail(port, sender):
    """A new session: the reply to MAIL FROM:<sender>."""
    with px.SmtpClient(port) as c:
        c.greeting()
        c.ehlo()
        r = c.cmd("MAIL FROM:<%s>" % sender)
        c.quit()
    return r


def hup(d):
    os.kill(d.proc.pid, signal.SIGHUP)


def measure_rate(d):
    """Messages/s through posternd, from a short warm-up load (counted)."""
    n = 200
    t0 = time.monotonic()
    r = subprocess.run(px.smtp_source(d.port, n, LOAD_SESSIONS, "warm@client.test",
                                      "user@example.test"),
                       capture_output=True, timeout=LOAD_BOUND)
    took = max(time.monotonic() - t0, 0.01)
    assert r.returncode == 0, "warm-up load failed: %s" % r.stderr.decode(errors="replace")
    return n, n / took


def test_reload_under_load(plugin, counting_sink, make_posternd, workdir):
    so = plugin("example")
    d = px.posternd_with_conf_d(
        make_posternd, "smtp:" + counting_sink.address,
        {"50-example.conf": example_conf(so, ["spammer@bad.test"])},
        settings={"log_level": "info"})
    assert probe_mail(d.port, "late@client.test").code == 250

    warm, rate = measure_rate(d)
    n = int(min(max(rate * LOAD_SECONDS, LOAD_MIN), LOAD_MAX))
    delivered_probes = 0

    # a session opened before any reload keeps generation 1
    old = px.SmtpClient(d.port)
    old.greeting()
    old.ehlo()

    err = open(str(workdir / "smtp-source.err"), "wb")
    load = subprocess.Popen(px.smtp_source(d.port, n, LOAD_SESSIONS, LOAD_FROM,
                                           "user@example.test"),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                            start_new_session=True)
    try:
        base = counting_sink.count()
        px.wait_until(lambda: counting_sink.count() >= base + min(50, n // 4), 60,
                      "the load to get going", load)

        # 1. a changed conf.d
        px.write_conf_d(d, "50-example.conf",
                        example_conf(so, ["spammer@bad.test", "late@client.test"]))
        hup(d)
        ok = d.wait_log(r" reload status=ok generation=2\b")
        assert ok, "no 'reload status=ok generation=2' in the log"
        assert load.poll() is None, "the load ended before the first reload: raise LOAD_SECONDS"
        r = probe_mail(d.port, "late@client.test")
        assert r.first == "550 5.7.1 Sender refused by the example plugin", r
        # the old session still has generation 1: late@ passes there
        assert old.cmd("MAIL FROM:<late@client.test>").code == 250
        assert old.cmd("RCPT TO:<user@example.test>").code == 250
        f = old.data(px.make_message(subject="old generation"))[1]
        assert f is not None and f.code == 250, f
        delivered_probes += 1

        # 2a. a broken conf.d: syntax error on line 3
        broken = px.write_conf_d(d, "60-broken.conf",
                                 "# broken on purpose\n\nno_such_setting_here = 1\n")
        hup(d)
        failed = d.wait_log(r" reload status=failed keeping=2 errors=\".*%s:3: "
                            % re.escape(broken))
        assert failed, "no 'reload status=failed keeping=2 errors=\"%s:3: ...' in:\n%s" % (
            broken, "\n".join(d.grep("reload")))
        os.unlink(broken)

        # 2b. a plugin whose configure() fails: also refused, gen 2 stays
        ex = px.write_conf_d(d, "50-example.conf", example_conf(so, ["nodomain"]))
        hup(d)
        failed = d.wait_log(r" reload status=failed keeping=2 errors=\".*%s:\d+: .*nodomain"
                            % re.escape(ex))
        assert failed, "\n".join(d.grep("reload"))
        assert load.poll() is None, "the load ended before the broken reloads: raise LOAD_SECONDS"

        r = probe_mail(d.port, "late@client.test")
        assert r.first == "550 5.7.1 Sender refused by the example plugin", \
            "generation 2 no longer serves new sessions: %s" % r
        res = px.send_message(d.port, px.make_message(), mail_from="gen2@client.test")
        assert res["final"].code == 250, res
        delivered_probes += 1

        rc = load.wait(timeout=LOAD_BOUND)
    finally:
        if load.poll() is None:
            px.stop_pid(load)
        err.close()
        old.close()
    with open(str(workdir / "smtp-source.err"), "rb") as f:
        errtext = f.read().decode("utf-8", "replace")
    assert rc == 0, "smtp-source failed (%s): %s" % (rc, errtext[-2000:])
    want = warm + n + delivered_probes
    got = counting_sink.wait_count(want)
    assert got == want, "the backend counted %d messages, expected %d" % (got, want)

    # every load message was delivered; sessions of both generations served it
    summaries = [s for s in d.summaries() if s.get("from") == "<%s>" % LOAD_FROM]
    bad = [s["line"] for s in summaries if s.get("status") != "delivered"]
    assert not bad, bad[:5]
    assert len(summaries) == n, (len(summaries), n)
    gens = set(re.findall(r" connect .*generation=(\d+)", d.log()))
    assert {"1", "2"} <= gens, "sessions of generations %r only" % gens
    assert "3" not in gens, "a refused reload made a new generation"
    assert d.alive()
