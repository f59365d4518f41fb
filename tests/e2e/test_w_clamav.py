"""w. plugins/clamav end to end (issue 11): libclamav in process and clamd,
with a database built by sigtool at run time (tests/e2e/clamtest.py), never
freshclam. The must-show list:
  1. EICAR as the body, as a base64 attachment, inside a zip attachment:
     each refused with 554 5.7.0 naming the signature; clean mail delivered;
     the policy can quarantine or tag instead; the private temp directory.
  2. clamav-testfiles' mail samples (clam.mail and the base64 / uuencoded
     mbox ones), and its archives attached, detected with a database made
     from clam.exe.
  3. A scan over its time budget, or over a limit (file size, files,
     recursion), gets on_error: tempfail by default (451 4.3.0), accept when
     configured, and a log line that says which.
  4. Reload under bounded load (SIGHUP, and the database watch; concurrent
     and blocking): no scan fails, the new signature applies after it; a
     database that fails to load keeps the old engine and says why.
  5. clamd mode (unix socket and TCP, clamd started here on a private
     config) gives the same verdicts as in-process mode.
  6. bench/clamav runs and prints CPU ms per 1 KB / 100 KB message and RSS,
     with the ratio to posternd without the plugin."""

import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time

import pytest

import clamtest as ct
import pxtest as px

pytestmark = [
    pytest.mark.skipif(not ct.have("sigtool"),
                       reason="sigtool not installed (Debian package clamav)"),
    pytest.mark.skipif(not ct.testfiles_present(),
                       reason="clamav-testfiles not installed (Debian package clamav-testfiles)"),
]


@pytest.fixture
def dbdir(tmp_path):
    d = ct.build_db(str(tmp_path / "db"))
    px.make_traversable(d)          # posternd reloads it as the user it serves as
    return d


@pytest.fixture
def clamtmp(tmp_path):
    """The parent of the plugin's private temp directory: like /tmp, so that
    the user posternd serves as (nobody, when the tests run as root) can
    make its own directory there."""
    d = tmp_path / "clamtmp"
    d.mkdir()
    os.chmod(str(d), 0o1777)
    px.make_traversable(str(d))
    return str(d)


def served_uid(d):
    """The uid posternd gave itself (its privileges line), else ours."""
    for line in d.grep(r"privileges user=\S+ uid=\d+"):
        return int(re.search(r"uid=(\d+)", line).group(1))
    return os.geteuid()


def clam_daemon(make_posternd, plugin, sink, dbdir, clamtmp, policy=None, section=None,
                **options):
    opts = dict(path=plugin("clamav"))
    opts.update(section or {})
    if not str(options.get("engine", "")).startswith("clamd:"):
        opts.update(database=dbdir, tmpdir=clamtmp)
    opts.update(options)
    settings = {"policy": policy} if policy else {}
    return px.posternd_with_conf_d(make_posternd, "smtp:" + sink.address,
                                   {"85-clamav.conf": px.plugin_section("clamav", **opts)},
                                   settings=settings)


def send(d, message, sender="sender@client.test"):
    return px.send_message(d.port, message, mail_from=sender)["final"]


# ------------------------------------------------------------------ 1 ---

def test_1_eicar_refused_naming_signature_clean_delivered(plugin, sink, make_posternd, dbdir,
                                                          clamtmp):
    d = clam_daemon(make_posternd, plugin, sink, dbdir, clamtmp)
    for kind, msg in (("body", ct.eicar_body()), ("base64", ct.eicar_base64()),
                      ("zip", ct.eicar_zip())):
        r = send(d, msg, sender="eicar-%s@client.test" % kind)
        assert ct.reply_names_signature(r, ct.EICAR_NAME), (kind, r)
        assert r.text == "5.7.0 Message refused: virus %s found" % ct.EICAR_NAME, r
    r = send(d, ct.clean(), sender="clean@client.test")
    assert r.code == 250, r
    msg, = sink.wait_for(1, mail_from="clean@client.test")
    assert not msg.header("X-Postern-Virus")
    assert sink.find(mail_from="eicar-body@client.test") == []
    assert len(d.grep(r"plugin=clamav scan result=infected engine=libclamav .*virus=%s"
                      % ct.EICAR_NAME.replace(".", r"\."))) == 3
    assert d.grep(r"plugin=clamav scan result=clean engine=libclamav size=\d+ ms=\d+")
    # the private temp directory: made by the first scan, 0700, the scanning
    # user's, left empty (libclamav's files for the MIME parts are gone)
    tmps = [n for n in os.listdir(clamtmp) if n.startswith("postern-clamav.")]
    assert len(tmps) == 1, tmps
    st = os.stat(os.path.join(clamtmp, tmps[0]))
    assert stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == served_uid(d), oct(st.st_mode)
    assert os.listdir(os.path.join(clamtmp, tmps[0])) == []


@pytest.mark.parametrize("action,header", [("quarantine", "X-Postern-Quarantine"),
                                           ("tag", "X-Postern-Tag")])
def test_1_policy_quarantines_or_tags_instead(plugin, sink, make_posternd, dbdir, clamtmp,
                                              action, header):
    d = clam_daemon(make_posternd, plugin, sink, dbdir, clamtmp,
                    policy={"actions": ["clamav=infected %s" % action]})
    r = send(d, ct.eicar_base64(), sender="held@client.test")
    assert r.code == 250, r
    msg, = sink.wait_for(1, mail_from="held@client.test")
    assert msg.header(header), msg.raw[:600]
    if action == "tag":
        assert msg.header(header) == ["clamav=infected"], msg.header(header)
    assert msg.header("X-Postern-Virus") == [ct.EICAR_NAME]


# ------------------------------------------------------------------ 2 ---

def test_2_clamav_testfiles_mail_samples_detected(plugin, sink, make_posternd, dbdir, clamtmp):
    d = clam_daemon(make_posternd, plugin, sink, dbdir, clamtmp)
    for name in ct.MAIL_SAMPLES:
        r = send(d, ct.sample(name), sender="sample@client.test")
        assert ct.reply_names_signature(r, ct.CLAMEXE_NAME), (name, r)
    missed = []
    for name in ct.ARCHIVE_SAMPLES:
        r = send(d, ct.attached_sample(name), sender="archive@client.test")
        if not ct.reply_names_signature(r, ct.CLAMEXE_NAME):
            missed.append((name, r))
    assert missed == []
    assert sink.count() == 0


# ------------------------------------------------------------------ 3 ---

def test_3_limits_get_on_error_tempfail_and_say_which(plugin, sink, make_posternd, dbdir,
                                                      clamtmp):
    d = clam_daemon(make_posternd, plugin, sink, dbdir, clamtmp, max_files=10, max_recursion=5,
                    max_filesize="1M", max_scansize="4M")
    cases = (("files", ct.clean_zip(20)), ("recursion", ct.clean_zip(1, nest=5)),
             ("filesize", ct.big(1536 * 1024)))
    for limit, msg in cases:
        r = send(d, msg, sender="limit-%s@client.test" % limit)
        assert r.code == 451 and r.lines[0].startswith("4.3.0"), (limit, r)
        assert d.grep(r"plugin=clamav scan result=error error=limit limit=%s .*action=on_error"
                      % limit), limit
    assert d.grep(r"limits disagree=yes message_size=\d+ max_filesize=1048576")
    # said at start too, before any message: limits.message_size_max is larger
    assert d.grep(r"plugin=clamav limits disagree=yes at=configure message_size_max=\d+ "
                  r"max_filesize=1048576 max_scansize=4194304")
    assert d.grep(r"plugin name=clamav stage=data-end error=invalid-verdict action=tempfail")
    # under the limits, the same kinds of message pass
    assert send(d, ct.clean_zip(2), sender="ok@client.test").code == 250
    assert send(d, ct.clean_zip(1, nest=1), sender="ok@client.test").code == 250
    sink.wait_for(2, mail_from="ok@client.test")
    assert sink.find(mail_from="limit-files@client.test") == []


def test_3_time_budget_on_error_tempfail_then_accept(plugin, sink, make_posternd, dbdir,
                                                     clamtmp):
    msg = ct.big(6 * 1024 * 1024)
    d = clam_daemon(make_posternd, plugin, sink, dbdir, clamtmp, max_scantime="1ms")
    r = send(d, msg, sender="slow@client.test")
    assert r.code == 451 and r.lines[0].startswith("4.3.0"), r
    assert d.grep(r"scan result=error error=limit limit=scantime .*"
                  r"detail=\"Heuristics\.Limits\.Exceeded\.MaxScanTime\" action=on_error")
    # the same scan with on_error = accept: delivered, unscanned, logged
    a = clam_daemon(make_posternd, plugin, sink, dbdir, clamtmp, max_scantime="1ms",
                    section={"on_error": "accept"})
    r = send(a, msg, sender="slow-accept@client.test")
    assert r.code == 250, r
    sink.wait_for(1, mail_from="slow-accept@client.test")
    assert a.grep(r"error=limit limit=scantime")
    assert a.grep(r"plugin name=clamav stage=data-end error=invalid-verdict action=accept")


# ------------------------------------------------------------------ 4 ---

class Load:
    """Bounded load: `threads` clients, each sending up to `limit`
    messages one after another (clean and EICAR in turn) until stopped;
    every reply is kept. A message may only get 250 (clean) or 554 naming
    EICAR (infected): anything else is a scan that failed."""

    def __init__(self, d, threads=3, limit=400):
        self.d, self.limit = d, limit
        self.stop_ev = threading.Event()
        self.results = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True)
                        for i in range(threads)]

    def run(self, i):
        for n in range(self.limit):
            if self.stop_ev.is_set():
                return
            infected = n % 2 == 1
            msg = ct.eicar_base64() if infected else ct.clean("load %d/%d" % (i, n))
            try:
                r = send(self.d, msg, sender="load@client.test")
                got = (r.code, r.text)
            except Exception as e:       # a dropped session is a failure too
                got = (0, repr(e))
            with self.lock:
                self.results.append((infected, got))

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def wait_count(self, n, timeout=60):
        px.wait_until(lambda: len(self.results) >= n, timeout, "%d load messages" % n)

    def __exit__(self, *a):
        self.stop_ev.set()
        for t in self.threads:
            t.join(timeout=120)

    def failures(self):
        bad = []
        for infected, (code, text) in self.results:
            ok = (code == 554 and ct.EICAR_NAME in text) if infected else code == 250
            if not ok:
                bad.append((infected, code, text))
        return bad


MARKER = b"POSTERN-NEW-SIGNATURE-MARKER-7d1f"


def marker_message():
    return ct.clean("marker", body=b"This line carries " + MARKER + b" in the text.\r\n")


@pytest.mark.parametrize("mode", ["concurrent", "blocking"])
def test_4_sighup_reload_under_load(plugin, sink, make_posternd, dbdir, clamtmp, mode):
    d = clam_daemon(make_posternd, plugin, sink, dbdir, clamtmp, reload=mode, watch_interval=0)
    assert send(d, marker_message(), sender="before@client.test").code == 250
    with Load(d) as load:
        load.wait_count(20)
        ct.build_db(dbdir, extra_ndb=[ct.marker_ndb("Test.Marker", MARKER)])
        os.kill(d.proc.pid, signal.SIGHUP)
        assert d.wait_log(r"plugin=clamav reload status=ok database=.* why=hup"), d.log()[-2000:]
        assert d.wait_log(r"reload status=ok generation=2")
        n = len(load.results)
        load.wait_count(n + 20)
    assert load.failures() == [], load.failures()[:5]
    assert len(load.results) >= 40
    assert d.grep(r"engine=loaded database=.* signatures=3 .*reload=%s why=hup" % mode)
    r = send(d, marker_message(), sender="after@client.test")
    assert ct.reply_names_signature(r, "Test.Marker.UNOFFICIAL"), r
    assert ct.reply_names_signature(send(d, ct.eicar_zip()), ct.EICAR_NAME)
    # a SIGHUP that changes nothing reloads nothing
    os.kill(d.proc.pid, signal.SIGHUP)
    assert d.wait_log(r"reload status=ok generation=3")
    assert d.grep(r"plugin=clamav reload status=unchanged")
    assert len(d.grep(r"engine=loaded ")) == 2


@pytest.mark.parametrize("mode", ["concurrent", "blocking"])
def test_4_watch_reload_under_load(plugin, sink, make_posternd, dbdir, clamtmp, mode):
    d = clam_daemon(make_posternd, plugin, sink, dbdir, clamtmp, reload=mode,
                    watch_interval="1s")
    with Load(d) as load:
        load.wait_count(10)
        ct.build_db(dbdir, extra_ndb=[ct.marker_ndb("Test.Marker", MARKER)])
        assert d.wait_log(r"plugin=clamav reload status=ok database=.* why=watch"), \
            d.log()[-2000:]
        n = len(load.results)
        load.wait_count(n + 20)
    assert load.failures() == [], load.failures()[:5]
    assert d.grep(r"reload status=started database=.* why=watch")
    r = send(d, marker_message(), sender="after@client.test")
    assert ct.reply_names_signature(r, "Test.Marker.UNOFFICIAL"), r


def scan_until_logged(d, pattern, timeout=15):
    """The watch is looked at by scans, and its outcome logged by the next
    scan: send EICAR every 0.2 s (each must still be refused) until pattern
    is in the log; bounded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert ct.reply_names_signature(send(d, ct.eicar_body()), ct.EICAR_NAME)
        if d.grep(pattern):
            return d.grep(pattern)
        time.sleep(0.2)
    return []


def test_4_failed_load_keeps_old_engine_and_says_why(plugin, sink, make_posternd, dbdir,
                                                     clamtmp):
    d = clam_daemon(make_posternd, plugin, sink, dbdir, clamtmp, watch_interval="1s")
    good = open(os.path.join(dbdir, "test.ndb")).read()
    # the watch: broken files are tried once, and the old engine stays
    ct.write_atomic(os.path.join(dbdir, "test.ndb"), good + "this is not a signature\n")
    assert scan_until_logged(d, r"plugin=clamav reload status=failed database=.* why=watch "
                             r"error=\"cannot load .*: Malformed database \(Problem parsing "
                             r"database at line 2\)\" keeping=old")
    for _ in range(4):
        time.sleep(0.4)
        assert ct.reply_names_signature(send(d, ct.eicar_body()), ct.EICAR_NAME)
    assert len(d.grep(r"why=watch error=")) == 1
    # SIGHUP with other broken files: the new generation fails, the old one
    # (and its engine) serves
    ct.write_atomic(os.path.join(dbdir, "test.ndb"), good + "still:not:a:signature\n")
    os.kill(d.proc.pid, signal.SIGHUP)
    assert d.wait_log(r"reload status=failed keeping=1")
    assert d.grep(r"plugin=clamav reload status=failed database=.* why=hup error=\"cannot "
                  r"load .*\" keeping=old")
    assert ct.reply_names_signature(send(d, ct.eicar_body()), ct.EICAR_NAME)
    assert send(d, ct.clean(), sender="still@client.test").code == 250
    # repaired: the watch loads it
    ct.write_atomic(os.path.join(dbdir, "test.ndb"),
                    good + ct.marker_ndb("Test.Marker", MARKER) + "\n")
    assert scan_until_logged(d, r"plugin=clamav reload status=ok database=.* why=watch "
                             r"engine=loaded .* signatures=3")
    assert ct.reply_names_signature(send(d, marker_message()), "Test.Marker.UNOFFICIAL")


def test_4_bad_database_at_start_is_an_error(posternd_bin, plugin, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    conf = tmp_path / "postern.conf"
    conf.write_text(px.render_conf({"backend": "smtp:127.0.0.1:25",
                                    "spool_dir": str(tmp_path / "spool")}) +
                    px.plugin_section("clamav", path=plugin("clamav"), database=str(empty)))
    r = px.run_check(posternd_bin, str(conf))
    assert r.returncode != 0
    assert "plugin 'clamav': configure failed: cannot load %s" % empty in r.stderr + r.stdout \
        or "holds no signatures" in r.stderr + r.stdout, r.stderr


# ------------------------------------------------------------------ 5 ---

@pytest.fixture
def clamd(tmp_path, dbdir):
    if not ct.have("clamd"):
        pytest.skip("clamd not installed (Debian package clamav-daemon)")
    c = ct.Clamd(tmp_path / "clamd", dbdir)
    try:
        c.start()
    except px.PeerError as e:
        pytest.fail("clamd did not start: %s\n%s" % (e, c.log()[-3000:]))
    yield c
    c.stop()


def verdicts(d, messages):
    out = []
    for name, msg in messages:
        r = send(d, msg, sender="cmp-%s@client.test" % name)
        out.append((name, r.code, r.text if r.code != 250 else ""))
    return out


def test_5_clamd_mode_same_verdicts(plugin, sink, make_posternd, dbdir, clamtmp, clamd):
    messages = [("clean", ct.clean()), ("eicar-body", ct.eicar_body()),
                ("eicar-base64", ct.eicar_base64()), ("eicar-zip", ct.eicar_zip()),
                ("clean-zip", ct.clean_zip(3))]
    messages += [(n, ct.sample(n)) for n in ct.MAIL_SAMPLES]
    inproc = clam_daemon(make_posternd, plugin, sink, dbdir, clamtmp)
    unix = clam_daemon(make_posternd, plugin, sink, dbdir, clamtmp,
                       engine="clamd:unix:" + clamd.socket, clamd_chunk="4k")
    tcp = clam_daemon(make_posternd, plugin, sink, dbdir, clamtmp,
                      engine="clamd:127.0.0.1:%d" % clamd.port)
    want = verdicts(inproc, messages)
    assert [v[1] for v in want] == [250, 554, 554, 554, 250, 554, 554, 554], want
    assert verdicts(unix, messages) == want
    assert verdicts(tcp, messages) == want
    assert len(unix.grep(r"scan result=infected engine=clamd .*virus=")) == 6
    # clamd's own limit (StreamMaxLength 1M here) is a limit; clamd gone is
    # an error: on_error both
    r = send(unix, ct.big(2 * 1024 * 1024))
    assert r.code == 451, r
    assert unix.grep(r"scan result=error error=limit limit=streamsize engine=clamd .*"
                     r"detail=\"clamd: INSTREAM size limit exceeded")
    clamd.stop()
    r = send(unix, ct.clean(), sender="down@client.test")
    assert r.code == 451 and r.lines[0].startswith("4.3.0"), r
    assert unix.grep(r"scan result=error error=clamd engine=clamd .*detail=\"connect unix:")


def test_5_clamd_timeout_is_on_error(plugin, sink, make_posternd, dbdir, clamtmp, tmp_path):
    import socket
    # a "clamd" that accepts and never answers
    s = socket.socket()
    s.bind((px.HOST, 0))
    s.listen(8)
    try:
        d = clam_daemon(make_posternd, plugin, sink, dbdir, clamtmp,
                        engine="clamd:127.0.0.1:%d" % s.getsockname()[1],
                        clamd_timeout="500ms")
        t0 = time.monotonic()
        r = send(d, ct.clean())
        assert r.code == 451, r
        assert time.monotonic() - t0 < 5
        assert d.grep(r"scan result=error error=timeout engine=clamd")
    finally:
        s.close()


# ------------------------------------------------------------------ 6 ---

def test_6_benchmark_prints_cpu_and_rss(tmp_path):
    script = os.path.join(px.top_srcdir(), "bench", "clamav")
    env = dict(os.environ, POSTERND=os.environ.get("POSTERND", ""),
               TOP_BUILDDIR=px.top_builddir())
    r = subprocess.run([sys.executable, script, "--quick"], capture_output=True, text=True,
                       timeout=240, env=env, cwd=str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    print(out)
    for size in ("1k", "100k"):
        assert re.search(r"^%s\s+\S+\s+[\d.]+\s+[\d.]+\s+[\d.]+x" % size, out, re.M), out
    assert re.search(r"^rss\s+\d+ kB\s+\d+ kB", out, re.M), out
    doc = open(os.path.join(px.top_srcdir(), "doc", "plugins", "clamav.md")).read()
    assert "GiB" in doc and "official database" in doc


