"""p9. A call that outlives its session and its configuration generation:
the chain it runs on is freed on posternd's main thread, never on the I/O
thread that ends the call (unconfigure hooks may be slow: an antivirus
engine). tests/plugins/sleeper.so blocks its RCPT hook past its budget; the
client gets on_error and leaves; a reload retires the generation; when the
late call ends, the chain goes to the main thread ("chain
freed=after-generation"), posternd keeps serving, and nothing leaks (the
ASan build's leak check runs at exit)."""

import os
import signal

import pxtest as px


def test_chain_freed_after_its_generation(plugin, sink, make_posternd):
    d = px.posternd_with_conf_d(
        make_posternd, "smtp:" + sink.address,
        {"50-sleeper.conf": px.plugin_section("sleeper", path=plugin("sleeper"),
                                              timeout="300ms", on_error="tempfail",
                                              sleep_ms=1500)})
    with px.SmtpClient(d.port) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@client.test>").code == 250
        r = c.cmd("RCPT TO:<user@example.test>")
        assert r.code == 451, r
        c.quit()
    # the call still sleeps; the session is gone; retire its generation
    os.kill(d.proc.pid, signal.SIGHUP)
    assert d.wait_log(r"reload status=ok"), d.log()[-3000:]
    assert d.wait_log(r"plugin=sleeper .*late=yes"), d.log()[-3000:]
    assert d.wait_log(r"chain freed=after-generation"), d.log()[-3000:]
    # still serving, on the new generation
    with px.SmtpClient(d.port) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd("MAIL FROM:<b@client.test>").code == 250
        c.quit()
    assert d.stop() == 0
