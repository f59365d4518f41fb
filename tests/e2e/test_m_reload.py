"""m. Invariant 6: SIGHUP builds a new configuration generation; sessions keep
the generation they started with; a failed reload leaves the old one running
and logs the error."""

import os
import signal

import pxtest as px

UNTRUSTED = ["trusted_networks=192.0.2.0/24"]


def rcpt_code(port, rcpt):
    with px.SmtpClient(port) as c:
        c.greeting()
        c.ehlo()
        c.cmd("MAIL FROM:<probe@client.test>")
        r = c.cmd("RCPT TO:<%s>" % rcpt)
        c.quit()
    return r.code


def rewrite_relay_domains(d, domains):
    d.settings["relay_domains"] = list(domains)
    d.write_config()


def test_reload_keeps_running_sessions(sink, make_posternd):
    d = make_posternd("smtp:" + sink.address, settings={"relay_domains": ["old.test"]},
                      overrides=UNTRUSTED)
    a = px.SmtpClient(d.port)
    a.greeting()
    a.ehlo()
    assert a.cmd("MAIL FROM:<during@client.test>").code == 250
    assert a.cmd("RCPT TO:<u1@old.test>").code == 250
    rewrite_relay_domains(d, ["new.test"])
    os.kill(d.proc.pid, signal.SIGHUP)
    # new sessions see the new generation (bounded polling by behaviour)
    px.wait_until(lambda: rcpt_code(d.port, "u@new.test") == 250, 20,
                  "the reloaded configuration to apply to new sessions", step=0.2)
    assert rcpt_code(d.port, "u@old.test") == 554
    # the session that started before the reload keeps its generation
    assert a.cmd("RCPT TO:<u2@old.test>").code == 250
    msg = px.make_message(subject="across a reload")
    _, final = a.data(msg)
    assert final.code == 250, final
    # and its next transaction too, on the same connection
    assert a.cmd("MAIL FROM:<during2@client.test>").code == 250
    assert a.cmd("RCPT TO:<u3@old.test>").code == 250
    assert a.data(msg)[1].code == 250
    a.quit()
    got = sink.wait_all(["during@client.test", "during2@client.test"])
    assert sorted(got["during@client.test"][0].rcpts) == ["u1@old.test", "u2@old.test"]
    assert got["during2@client.test"][0].rcpts == ["u3@old.test"]
    assert d.alive()


def test_failed_reload_keeps_old_generation(sink, make_posternd):
    d = make_posternd("smtp:" + sink.address, settings={"relay_domains": ["old.test"]},
                      overrides=UNTRUSTED)
    assert rcpt_code(d.port, "u@old.test") == 250
    with open(d.conf, "a") as f:
        f.write('relay_domains = {"new.test"}\nno_such_key = 1\n')
    bad_line = sum(1 for _ in open(d.conf))
    os.kill(d.proc.pid, signal.SIGHUP)
    lines = d.wait_log(r"%s:%d:" % (d.conf.replace(".", r"\."), bad_line))
    assert lines, "the failed reload's error (FILE:LINE) is not in the log"
    assert d.alive()
    assert rcpt_code(d.port, "u@old.test") == 250
    assert rcpt_code(d.port, "u@new.test") == 554
    # a later good reload still works
    rewrite_relay_domains(d, ["new.test"])
    os.kill(d.proc.pid, signal.SIGHUP)
    px.wait_until(lambda: rcpt_code(d.port, "u@new.test") == 250, 20,
                  "the good reload to apply", step=0.2)
    assert d.alive()
