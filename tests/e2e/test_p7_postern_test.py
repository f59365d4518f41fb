"""p7. `postern test` and posternd agree (issue 4, must-show 7; design
invariant 5): over a set of messages and envelopes, under several
configurations (plain, global monitor, policy actions, a plugin's own
tempfail), the action, the SMTP reply, the header fields added (Received
aside) and the plugins' verdicts that `postern test` prints are what
posternd does to the same message and envelope, as seen by an SMTP client
and at the backend. Also: postern test's exit codes and output format."""

import re

import pytest

import pxtest as px

AUTHSERV = "mx.example.test"
BODY_LF = b"Hello,\n\nthis message has LF line ends in its file.\n.a dot line\n"


def case_messages():
    """(id, message for posternd, message for postern test, rcpts, sender)."""
    plain = px.make_message(subject="plain", msgid="<plain@client.test>")
    flagged = px.make_message(subject="flagged", msgid="<flag@client.test>",
                              extra_headers=["X-Postern-Test: reject"])
    folded = px.make_message(subject="folded", msgid="<fold@client.test>",
                             extra_headers=["X-Postern-Test:\r\n\tREJECT"])
    big = px.make_message(subject="big", msgid="<big@client.test>",
                          body=(b"z" * 76 + b"\r\n") * 400)
    forged = (b"Authentication-Results: " + AUTHSERV.encode() + b"; spf=pass smtp.mailfrom=x\r\n"
              b"Authentication-Results: elsewhere.test; dkim=pass header.d=x\r\n"
              + px.make_message(subject="forged", msgid="<forged@client.test>"))
    lf = (b"From: <lf@client.test>\nTo: <user@example.test>\nSubject: lf only\n"
          b"Message-ID: <lf@client.test>\n\n" + BODY_LF)
    return [
        ("plain", plain, plain, ["user@example.test"], "plain"),
        ("flagged", flagged, flagged, ["user@example.test"], "flagged"),
        ("folded", folded, folded, ["user@example.test"], "folded"),
        ("big", big, big, ["user@example.test"], "big"),
        ("forged-ar", forged, forged, ["user@example.test"], "forged"),
        ("lf-file", px.to_crlf(lf), lf, ["user@example.test"], "lf"),
        ("two-rcpts", plain, plain, ["a@example.test", "b@example.test"], "two"),
        ("bad-sender", plain, plain, ["user@example.test"], None),
        ("null-sender", plain, plain, ["user@example.test"], ""),
    ]


CONFIGS = {
    "plain": {},
    "monitor": {"policy": {"monitor": True}},
    "quarantine": {"policy": {"actions": ["example=match quarantine"]}},
    "discard": {"policy": {"actions": ["example=match discard"]}},
    "tempfail": {"policy": {"actions": ["example=match tempfail"]}},
    "greylist": "tempfailer",
}


def conf_d(plugin, cfg):
    files = {
        "40-recorder.conf": px.plugin_section("recorder", path=plugin("recorder"),
                                              results=["spf=pass smtp.mailfrom=client.test"]),
        "50-example.conf": px.plugin_section("example", path=plugin("example"),
                                             reject_senders=["spammer@bad.test"],
                                             max_size="20k"),
    }
    if cfg == "greylist":
        files["60-tempfailer.conf"] = px.plugin_section("tempfailer",
                                                        path=plugin("tempfailer"))
    return files


def settings_for(cfg):
    s = {"policy": {"authserv_id": AUTHSERV}}
    extra = CONFIGS[cfg]
    if isinstance(extra, dict):
        for k, v in extra.items():
            s[k] = dict(s.get(k, {}), **v)
    return s


def sender_for(cfg, tag):
    if tag is None:
        return "spammer@bad.test"
    if tag == "":
        return ""
    return "%s-%s@client.test" % (cfg, tag)


def posternd_outcome(d, sink, message, sender, rcpts):
    """(action, reply line, delivered SinkMessage or None) for one session."""
    res = px.send_message(d.port, message, mail_from=sender, rcpts=rcpts)
    final = res["final"]
    if final.code >= 500:
        return "reject", final.first, None
    if final.code >= 400:
        return "tempfail", final.first, None
    got = sink.wait_for(1, mail_from=sender, timeout=5)
    if not got:
        return "discard", final.first, None
    assert len(got) == 1, got
    m = got[0]
    q = m.header("X-Postern-Quarantine")
    return ("quarantine" if q and q[0].split()[0] == "yes" else "accept"), final.first, m


def session_verdicts(d, sender):
    """[(plugin, stage, verdict)] that posternd logged for the session whose
    log names <sender> (None if no line names it)."""
    sid = None
    for l in d.lines():
        m = px.LOG_RE.match(l)
        if m and ("from=<%s>" % sender) in m.group(3):
            sid = m.group(2)
            break
    if sid is None:
        return None
    out = []
    for l in d.lines():
        m = px.LOG_RE.match(l)
        if m and m.group(2) == sid:
            kv = re.match(r"plugin name=(\S+) stage=(\S+) verdict=(\S+)", m.group(3))
            if kv:
                out.append(kv.groups())
    return out


@pytest.mark.parametrize("cfg", list(CONFIGS))
def test_postern_test_matches_posternd(cfg, plugin, postern_bin, make_sink, make_posternd):
    sink = make_sink()
    d = px.posternd_with_conf_d(make_posternd, "smtp:" + sink.address, conf_d(plugin, cfg),
                                settings=settings_for(cfg))
    problems = []
    for cid, msg_d, msg_t, rcpts, tag in case_messages():
        sender = sender_for(cfg, tag)
        if sender == "" and sink.find(mail_from=""):
            continue
        action, reply, delivered = posternd_outcome(d, sink, msg_d, sender, rcpts)
        t = px.postern_test(postern_bin, d.conf, msg_t, sender, rcpts, helo="client.test")
        where = "%s/%s" % (cfg, cid)
        if t.action != action:
            problems.append("%s: posternd %s (%s), postern test %r" % (where, action, reply, t))
            continue
        if t.returncode != px.POSTERN_TEST_EXIT[action]:
            problems.append("%s: postern test exit %s for %s" % (where, t.returncode, action))
        if action in ("reject", "tempfail") and t.reply != reply:
            problems.append("%s: reply: posternd %r, postern test %r" % (where, reply, t.reply))
        if delivered is not None:
            added = px.added_headers(delivered.content, msg_d)
            if added != t.headers:
                problems.append("%s: headers: posternd added %r, postern test says %r"
                                % (where, added, t.headers))
        if len(rcpts) == 1 and sender:
            logged = session_verdicts(d, sender)
            printed = [(p.get("plugin"), p.get("stage"), p.get("verdict")) for p in t.plugins]
            if logged is not None and logged != printed:
                problems.append("%s: plugin verdicts: posternd logged %r, postern test "
                                "printed %r" % (where, logged, printed))
    assert not problems, "\n".join(problems)


def test_postern_test_output_format(plugin, postern_bin, make_posternd):
    d = make_posternd("smtp:127.0.0.1:25", start=False, settings=settings_for("plain"))
    for name, text in conf_d(plugin, "plain").items():
        px.write_conf_d(d, name, text)
    d.write_config()
    msg = px.make_message(extra_headers=["X-Postern-Test: reject"])
    t = px.postern_test(postern_bin, d.conf, msg, "fmt@client.test", ["user@example.test"])
    assert t.returncode == 2, t
    assert t.action == "reject" and t.reply == \
        "550 5.7.1 Message refused by the example plugin", t
    lines = t.stdout.splitlines()
    for l in lines:
        assert re.match(r"^(plugin=\S+ stage=\S+ verdict=\S+ ms=\d+( [\w.-]+=\S+)*"
                        r"( results=\".*\")?|action=\w+( [\w.-]+=\S+)* reply=\".*\"|"
                        r"header: [^:\s]+: .*|[ \t]+\S.*)$", l), \
            "unexpected output line %r" % l
    ex = [p for p in t.plugins if p.get("plugin") == "example" and p.get("stage") == "data-end"]
    assert ex and ex[0]["verdict"] == "reject", t
    assert "example=match" in ex[0].get("results", ""), t
    rec = [p for p in t.plugins if p.get("plugin") == "recorder"]
    assert rec and "spf=pass" in rec[0].get("results", ""), t
    # order: plugin lines, then action, then headers
    kinds = [l.split("=", 1)[0].split(":", 1)[0] for l in lines if l[:1] not in (" ", "\t")]
    assert kinds == sorted(kinds, key=["plugin", "action", "header"].index), kinds


def test_postern_test_accept_lists_headers(plugin, postern_bin, make_posternd):
    d = make_posternd("smtp:127.0.0.1:25", start=False, settings=settings_for("plain"))
    for name, text in conf_d(plugin, "plain").items():
        px.write_conf_d(d, name, text)
    d.write_config()
    t = px.postern_test(postern_bin, d.conf, px.make_message(), "ok@client.test",
                        ["user@example.test"])
    assert t.returncode == 0 and t.action == "accept", t
    assert "Authentication-Results: %s; spf=pass smtp.mailfrom=client.test" % AUTHSERV \
        in t.headers, t
    assert "X-Postern-Example: checked" in t.headers, t
    assert not any(h.lower().startswith("received:") for h in t.headers), t


def test_postern_test_errors_exit_1(postern_bin, make_posternd, workdir):
    d = make_posternd("smtp:127.0.0.1:25", start=False)
    d.write_config()
    # no --rcpt
    t = px.postern_test(postern_bin, d.conf, px.make_message(), "x@client.test", [])
    assert t.returncode == 1, t
    # a configuration that does not load
    px.write_conf_d(d, "90-bad.conf", "no_such_setting_here = 1\n")
    t = px.postern_test(postern_bin, d.conf, px.make_message(), "x@client.test",
                        ["user@example.test"])
    assert t.returncode == 1 and "90-bad.conf:1" in t.stderr, t


def test_postern_test_overrides(plugin, postern_bin, make_posternd):
    """-o works for postern test as for posternd (plugin option, monitor)."""
    d = make_posternd("smtp:127.0.0.1:25", start=False, settings=settings_for("plain"))
    for name, text in conf_d(plugin, "plain").items():
        px.write_conf_d(d, name, text)
    d.write_config()
    msg = px.make_message()
    t = px.postern_test(postern_bin, d.conf, msg, "who@client.test", ["user@example.test"],
                        overrides=["example.reject_senders=who@client.test"])
    assert t.action == "reject" and t.returncode == 2, t
    assert t.reply == "550 5.7.1 Sender refused by the example plugin", t
    t = px.postern_test(postern_bin, d.conf, msg, "who@client.test", ["user@example.test"],
                        overrides=["example.reject_senders=who@client.test",
                                   "policy.monitor=yes"])
    assert t.action == "accept" and t.returncode == 0, t
