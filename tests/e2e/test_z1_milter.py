"""z1. postern-milter behind a real Postfix (issue 12, must-show 1 and 2).

swaks -> a private Postfix (smtpd_milters = postern-milter, milter_default_action
= tempfail) -> smtp-sink. The chain is SPF, DKIM, greylisting, DMARC and
ClamAV (pxmilter.chain_files), its DNS from dnsserver.py; the client address
reaches Postfix (and so the milter) with XCLIENT.

  1. a good message (SPF and DKIM pass, DMARC pass) arrives with exactly one
     Authentication-Results, ours, at the top; a forged one carrying our
     authserv-id is removed;
     a forged From (example.com, p=reject) is refused by Postfix with our
     550 5.7.1 text; greylisting's 451 4.7.1 reaches the client at RCPT;
     EICAR is refused with our 554 5.7.0 text; DMARC p=quarantine puts the
     message on Postfix's hold queue (smfi_quarantine); mail from the
     signing network gets a DKIM-Signature (inserted without CRs) that
     python3-dkim verifies;
  2. postern-milter stopped: Postfix answers 451 (milter_default_action =
     tempfail), nothing reaches the sink; started again, the same message
     is delivered (the client kept it: nothing lost).
"""

import os
import subprocess
import time

import pytest

import clamtest as ct
import dkimtest as dk
import dmarctest as dm
import pxmilter as pm
import pxtest as px
from dnsserver import DNSServer

RCPT = "user@example.test"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """DNS, a sink, postern-milter (the chain), Postfix using it."""
    top = tmp_path_factory.mktemp("milter")
    px.make_traversable(str(top))
    key = dk.make_key(str(top), "s1")
    dns = DNSServer(dict(pm.records(key), **pm.EXTRA), servfail=pm.SERVFAIL).__enter__()
    sink = px.SmtpSink(os.path.join(str(top), "sink"))
    milter = pf = None
    try:
        sink.start()
        dbdir = clamtmp = None
        if pm.clamav_built():
            dbdir = ct.build_db(os.path.join(str(top), "db"))
            px.make_traversable(dbdir)
            clamtmp = os.path.join(str(top), "clamtmp")
            os.mkdir(clamtmp)
            os.chmod(clamtmp, 0o1777)
        milter = pm.PosternMilter(os.path.join(str(top), "m"), settings=pm.settings(dns))
        milter.write_config()
        pm.write_conf_d(milter, pm.chain_files(px.find_plugin, key, dbdir, clamtmp))
        milter.start()
        pf = pm.postfix_milter(os.path.join(str(top), "pf"), sink.port, milter.port)
        pf.start()
        yield {"dns": dns, "sink": sink, "milter": milter, "pf": pf, "key": key,
               "clamav": dbdir is not None}
    finally:
        if pf is not None:
            pf.stop()
        if milter is not None:
            milter.stop()
            assert not milter.sanitizer_reports(), milter.sanitizer_reports()
        sink.stop()
        dns.__exit__(None, None, None)


def uniq(tag):
    return "%s-%d-%d" % (tag, os.getpid(), time.monotonic_ns() % 10 ** 9)


def good_message(key, sender, subject="good", extra=b""):
    msg = dk.message(sender=sender, subject=subject)
    msg = dk.sign(msg, key, "s1", domain="good.example")
    return extra + msg


def test_1_good_message_one_authres(world):
    sender = uniq("alice") + "@good.example"
    forged = b"Authentication-Results: mx.test; dkim=pass header.d=good.example (forged)\r\n"
    msg = good_message(world["key"], sender, extra=forged)
    r = pm.swaks(world["pf"].port, sender, RCPT, msg, client_addr=pm.GOOD_IP)
    assert r.final and r.final[0] == 250, r
    got, = world["sink"].wait_for(1, mail_from=sender)
    ars = pm.ar_values(got.content)
    assert len(ars) == 1, got.content[:2000]
    res = {x.method: x.result for x in dm.authres_of(ars[0]).results}
    assert res == {"spf": "pass", "dkim": "pass", "dmarc": "pass"}, ars
    assert b"(forged)" not in got.content
    names = [n.lower() for n, _ in px.header_fields(got.content)]
    # ours is above every field of the message as sent (Postfix's own
    # Received may come first)
    assert names.index("authentication-results") < names.index("dkim-signature"), names
    assert world["milter"].wait_log(r"milter message queue_id=\w+ .*action=accept")


def test_1_forged_from_refused_with_our_550(world):
    sender = uniq("bob") + "@good.example"
    msg = dk.message(sender="ceo@example.com", subject="forged")
    r = pm.swaks(world["pf"].port, sender, RCPT, msg, client_addr=pm.GOOD_IP)
    assert r.final == (550, "5.7.1 Message refused: the DMARC policy of example.com (p=reject) "
                            "does not authorize it"), r
    assert world["sink"].find(mail_from=sender) == []


def test_1_greylisting_451_reaches_the_client(world):
    sender = uniq("grey") + "@grey.example"
    r = pm.swaks(world["pf"].port, sender, RCPT, px.make_message("grey"),
                 client_addr=pm.GREY_IP)
    assert r.final[0] == 451 and r.final[1].startswith("4.7.1 Greylisted"), r
    assert 354 not in [c for c, _ in r.replies], r        # refused at RCPT


def test_1_eicar_refused_with_our_554(world):
    if not world["clamav"]:
        pytest.fail("plugins/clamav is not built")
    sender = uniq("eicar") + "@good.example"
    r = pm.swaks(world["pf"].port, sender, RCPT, ct.eicar_body(), client_addr=pm.GOOD_IP)
    assert r.final == (554, "5.7.0 Message refused: virus %s found" % ct.EICAR_NAME), r
    assert world["sink"].find(mail_from=sender) == []


def test_1_quarantine_is_postfix_hold(world):
    sender = uniq("q") + "@good.example"
    msg = dk.message(sender="a@quar.example", subject="quarantine me")
    r = pm.swaks(world["pf"].port, sender, RCPT, msg, client_addr=pm.GOOD_IP)
    assert r.final[0] == 250, r
    pf = world["pf"]
    out = ""
    for _ in range(50):
        out = subprocess.run(["postqueue", "-c", pf.confdir, "-p"], capture_output=True,
                             text=True, timeout=30).stdout
        if sender in out:
            break
        time.sleep(0.1)
    # "!" after the queue id: on hold
    assert any(sender in l and "!" in l.split()[0] for l in out.splitlines()), out
    assert world["sink"].find(mail_from=sender) == []
    assert world["milter"].grep(r"plugin name=dmarc stage=data-end verdict=")


def test_1_dkim_signature_inserted_and_verifies(world):
    sender = uniq("s") + "@signed.example"
    msg = dk.message(sender=sender, subject="sign me")
    r = pm.swaks(world["pf"].port, sender, RCPT, msg, client_addr=pm.SIGN_IP)
    assert r.final[0] == 250, r
    got, = world["sink"].wait_for(1, mail_from=sender)
    assert b"\r\r" not in got.content
    assert b"DKIM-Signature:" in got.content
    recs = {"s2._domainkey.signed.example": [("TXT", world["key"].record)]}
    assert dk.dkimpy_verify(px.to_crlf(got.content), recs), got.content[:3000]


def test_2_milter_stopped_tempfail_nothing_lost(world):
    m, sink = world["milter"], world["sink"]
    sender = uniq("down") + "@good.example"
    msg = good_message(world["key"], sender, subject="while down")
    m.stop()
    r = pm.swaks(world["pf"].port, sender, RCPT, msg, client_addr=pm.GOOD_IP)
    codes = [c for c, _ in r.replies]
    assert r.final[0] == 451 and r.final[1].startswith("4.7.1"), r
    assert 250 not in codes[codes.index(451):], r     # nothing accepted after
    time.sleep(1)
    assert sink.find(mail_from=sender) == []
    assert "milter" in world["pf"].log(), world["pf"].log()[-2000:]
    m.start()
    r = pm.swaks(world["pf"].port, sender, RCPT, msg, client_addr=pm.GOOD_IP)
    assert r.final[0] == 250, r
    got, = sink.wait_for(1, mail_from=sender)
    assert len(pm.ar_values(got.content)) == 1
