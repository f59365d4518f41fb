"""p8. A plugin that hangs forever on one sender's mail costs its own calls,
never the service (issue 8, must-show 3). tests/plugins/hanger.so blocks its
MAIL hook for ten minutes (bounded; the thread goes when posternd exits)
whenever the sender is stuck@hung.test, as libspf2 does when its DNS server
never answers. The hung sender gets the plugin's on_error at the budget;
with more calls hung than the pool keeps workers, 20 concurrent sessions of
other mail (the same plugin, quick for them) keep flowing; when the plugin
has as many stuck calls as the pool allows one plugin, its calls get
on_error at once (logged, naming the plugin) instead of taking a worker;
and posternd still stops promptly on SIGTERM."""

import re
import threading
import time

import pxtest as px

HUNG = "stuck@hung.test"
BUDGET = 1.0                    # the plugin's timeout, seconds
OTHERS = 20                     # concurrent sessions of other mail
STUCK_RE = re.compile(r"plugin=hanger stage=mail late=yes stuck=yes pool_threads=(\d+) "
                      r"pool_stuck=(\d+) pool_min=(\d+) pool_max=(\d+)")


def hanger_daemon(plugin, make_posternd, sink):
    return px.posternd_with_conf_d(
        make_posternd, "smtp:" + sink.address,
        {"50-hanger.conf": px.plugin_section("hanger", path=plugin("hanger"),
                                             timeout="%dms" % int(BUDGET * 1000),
                                             on_error="tempfail", hang_from=HUNG,
                                             hang_ms=600000)})


def hung_mail():
    """One session of the hung sender: MAIL must get on_error (451 4.3.0)
    after the budget; returns (reply, seconds)."""
    with px.SmtpClient(px_port[0]) as c:
        c.greeting()
        c.ehlo()
        t0 = time.monotonic()
        r = c.cmd("MAIL FROM:<%s>" % HUNG)
        took = time.monotonic() - t0
        c.quit()
    return r, took


px_port = [None]


def in_parallel(fn, args_list):
    """fn(*args) for each args, each on its own thread; the results in order."""
    out = [None] * len(args_list)

    def run(i, args):
        try:
            out[i] = fn(*args)
        except Exception as e:          # reported by the caller's asserts
            out[i] = e
    threads = [threading.Thread(target=run, args=(i, a)) for i, a in enumerate(args_list)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(px.IO_TIMEOUT * 2)
    return out


def other_mail(i):
    """A session of other mail: two messages, timed."""
    sender = "flow%02d@client.test" % i
    t0 = time.monotonic()
    res = [px.send_message(px_port[0], px.make_message(subject="flow %d.%d" % (i, k)),
                           mail_from=sender) for k in range(2)]
    return sender, res, time.monotonic() - t0


def test_hung_sender_does_not_stop_other_mail(plugin, sink, make_posternd):
    d = hanger_daemon(plugin, make_posternd, sink)
    px_port[0] = d.port

    # one hung call tells the pool's size: pool_min workers, pool_max at most
    r, took = hung_mail()
    assert r.code == 451 and r.lines[0].startswith("4.3.0"), r
    assert BUDGET * 0.9 <= took < BUDGET + 2.0, took
    m = STUCK_RE.search("\n".join(d.wait_log(STUCK_RE.pattern)))
    assert m, d.log()[-3000:]
    pool_min, pool_max = int(m.group(3)), int(m.group(4))
    limit = pool_max // 4                    # px_workpool_stuck_max
    hung = pool_min + 2                      # more than the pool keeps workers
    assert hung < limit, "pool min %d max %d: no room to show it" % (pool_min, pool_max)

    # more calls hang than the pool has workers ...
    replies = in_parallel(hung_mail, [()] * (hung - 1))
    for x in replies:
        assert not isinstance(x, Exception), x
        r, took = x
        assert r.code == 451 and r.lines[0].startswith("4.3.0"), r
        assert took < BUDGET + 2.0, took
    lines = d.wait_log(STUCK_RE.pattern, n=hung)
    assert len(lines) >= hung, lines
    assert max(int(STUCK_RE.search(l).group(2)) for l in lines) >= hung > pool_min, lines

    # ... and 20 concurrent sessions of other mail flow, none waiting for a budget
    t0 = time.monotonic()
    results = in_parallel(other_mail, [(i,) for i in range(OTHERS)])
    took = time.monotonic() - t0
    senders = []
    for x in results:
        assert not isinstance(x, Exception), x
        sender, res, spent = x
        senders.append(sender)
        for one in res:
            assert one["mail"].code == 250, (sender, one["mail"])
            assert one["final"].code == 250, (sender, one["final"])
        assert spent < 5 * BUDGET, "%s took %.1fs: it waited behind hung calls" % (sender, spent)
    got = sink.wait_all(senders)
    assert all(len(got[s]) == 2 for s in senders), {s: len(v) for s, v in got.items()}
    assert took < 30, took
    # the hung calls are still hung (the plugin's hook has not returned)
    assert not d.grep(r"plugin=hanger stage=mail late=yes verdict=")
    # the hung sender got on_error, and the log names the plugin
    assert len(d.grep(r" plugin name=hanger stage=mail error=timeout action=tempfail")) == hung

    # up to the plugin's limit of stuck calls ...
    replies = in_parallel(hung_mail, [()] * (limit - hung))
    for x in replies:
        assert not isinstance(x, Exception), x
        assert x[0].code == 451, x
    assert d.wait_log(r"- plugin=hanger overloaded=yes late_calls=%d limit=%d" % (limit, limit))
    # ... then the plugin gets on_error at once, without a worker, for everyone
    for sender in (HUNG, "after@client.test"):
        with px.SmtpClient(d.port) as c:
            c.greeting()
            c.ehlo()
            t0 = time.monotonic()
            r = c.cmd("MAIL FROM:<%s>" % sender)
            took = time.monotonic() - t0
            c.quit()
        assert r.code == 451 and r.lines[0].startswith("4.3.0"), r
        assert took < BUDGET / 2, "on_error came after %.2fs, not at once" % took
    assert len(d.wait_log(r" plugin name=hanger stage=mail error=overloaded action=tempfail",
                          n=2)) == 2
    assert d.alive()

    # SIGTERM: posternd does not wait for the hung hooks
    t0 = time.monotonic()
    rc = d.stop()
    assert not d.killed and rc == 0, (rc, d.killed)
    assert time.monotonic() - t0 < px.STOP_WAIT - 1, time.monotonic() - t0
