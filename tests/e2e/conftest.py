"""Fixtures for Postern's end-to-end tests (see pxtest.py for the peers).

The suite is run by tests/e2e/run (make check), which passes POSTERND,
TOP_SRCDIR and TOP_BUILDDIR. By hand:

    POSTERND=$PWD/posternd PYTHONDONTWRITEBYTECODE=1 \\
        /usr/bin/python3 -m pytest -p no:cacheprovider -q -rs tests/e2e --basetemp=/tmp/pe2e
"""

import os
import signal

import pytest

import faultsmtp as fs
import pxtest as px

HERE = os.path.dirname(os.path.abspath(__file__))

# No test may run longer than this (a watchdog: every wait inside is bounded
# already; this catches a bound we forgot).
TEST_BOUND = int(os.environ.get("PXTEST_BOUND", "300"))

# Signals that mean posternd crashed rather than stopped.
CRASH_SIGNALS = {signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS, signal.SIGFPE,
                 signal.SIGILL, signal.SIGTRAP}


class TestBoundExceeded(Exception):
    pass


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    def on_alarm(signum, frame):
        raise TestBoundExceeded("test ran longer than %d s" % TEST_BOUND)
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(TEST_BOUND)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure, attach the tail of every posternd log the test started."""
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for i, d in enumerate(getattr(item, "_pxtest_daemons", [])):
            rep.sections.append(("posternd log %d (%s)" % (i, d.logfile),
                                 d.log()[-6000:]))


def find_posternd():
    p = os.environ.get("POSTERND")
    if not p:
        top = os.environ.get("TOP_BUILDDIR") or os.path.dirname(os.path.dirname(HERE))
        p = os.path.join(top, "posternd")
    return os.path.abspath(p)


@pytest.fixture(scope="session")
def posternd_bin():
    p = find_posternd()
    if not (os.path.isfile(p) and os.access(p, os.X_OK)):
        pytest.fail("posternd binary not found or not executable: %s "
                    "(build it, or set POSTERND)" % p)
    return p


@pytest.fixture
def workdir(tmp_path):
    px.make_traversable(str(tmp_path))
    return tmp_path


@pytest.fixture
def make_sink(tmp_path_factory):
    """make_sink(opts=(...)) -> a started SmtpSink, stopped at teardown."""
    started = []

    def make(opts=(), **kw):
        d = tmp_path_factory.mktemp("sink")
        px.make_traversable(str(d))
        s = px.SmtpSink(d, opts=opts, **kw)
        started.append(s)
        return s.start()
    yield make
    for s in started:
        s.stop()


@pytest.fixture
def sink(make_sink):
    return make_sink()


@pytest.fixture
def make_fault_backend():
    """make_fault_backend(**kw) -> a started faultsmtp.FaultSMTP (faults by
    recipient local part or by name, LMTP, STARTTLS: see faultsmtp.py),
    stopped at teardown. Defaults here: the EHLO list of fs.PROXY_EHLO (no
    SIZE limit), every message's bytes kept, a patient io_timeout."""
    started = []

    def make(**kw):
        kw.setdefault("ehlo", fs.PROXY_EHLO)
        kw.setdefault("keep_data_max", 1 << 30)
        kw.setdefault("io_timeout", 120.0)
        b = fs.FaultSMTP(**kw)
        started.append(b)
        return b.start()
    yield make
    for b in started:
        b.stop()


@pytest.fixture
def lmtp_server():
    s = px.AioLmtpServer()
    try:
        yield s.start()
    finally:
        s.stop()


@pytest.fixture(scope="session")
def postfix_backend(tmp_path_factory):
    """A private Postfix (smtpd on a free port) relaying example.test and
    other.test to an smtp-sink. check_recipient_access rejects
    reject@example.test (550 5.1.1) and tempfails tempfail@example.test.
    Shared by the session: tests find their messages by a unique sender."""
    d = tmp_path_factory.mktemp("postfix")
    px.make_traversable(str(d))
    sink = px.SmtpSink(os.path.join(str(d), "sink"))
    pf = None
    try:
        sink.start()
        pf = px.PostfixInstance(os.path.join(str(d), "pf"), sink.port,
                                relay_domains=("example.test", "other.test"),
                                rcpt_access={
                                    "reject@example.test": "550 5.1.1 rejected by backend map",
                                    "tempfail@example.test": "450 4.2.0 tempfailed by backend map",
                                })
        pf.start()
        yield pf, sink
    finally:
        if pf is not None:
            pf.stop()
        sink.stop()


@pytest.fixture
def make_posternd(posternd_bin, tmp_path_factory, request):
    """make_posternd(backend, settings={...}, overrides=[...]) -> a started
    Posternd. At teardown it is stopped by PID (SIGTERM, then SIGKILL after a
    bound); a posternd that died on its own, crashed, ignored SIGTERM, or
    wrote a sanitizer report (ASan, LSan, TSan, UBSan) to its log fails the
    test."""
    started = []
    request.node._pxtest_daemons = started

    def make(backend, settings=None, overrides=(), start=True, **kw):
        d = tmp_path_factory.mktemp("posternd")
        px.make_traversable(str(d))
        p = px.Posternd(posternd_bin, d, backend, settings=settings,
                        overrides=overrides, **kw)
        started.append(p)
        return p.start() if start else p
    yield make
    problems = []
    for p in started:
        if p.proc is None:
            continue
        died_early = not p.stopped and p.proc.poll() is not None
        rc = p.stop()
        if died_early:
            problems.append("posternd (pid %d) exited on its own during the test, status %s"
                            % (p.proc.pid, rc))
        elif p.killed:
            problems.append("posternd (pid %d) did not exit within %ss of SIGTERM"
                            % (p.proc.pid, px.STOP_WAIT))
        elif rc is not None and rc < 0 and -rc in CRASH_SIGNALS:
            problems.append("posternd (pid %d) died of signal %d" % (p.proc.pid, -rc))
        reports = p.sanitizer_reports()
        if reports:
            problems.append("posternd (pid %d) has %d sanitizer report(s) in its log: %s"
                            % (p.proc.pid, len(reports), "; ".join(reports[:3])))
        left = []
        for root, dirs, names in os.walk(p.spool):
            if root == p.spool and "store" in dirs:
                dirs.remove("store")    # the default LMDB store (lmdb:SPOOL_DIR/store)
            left += [os.path.join(root, n) for n in names]
        if left:
            problems.append("posternd (pid %d) left %d file(s) in its spool_dir after it "
                            "stopped: %s" % (p.proc.pid, len(left), left[:3]))
    if problems:
        pytest.fail("; ".join(problems) + "\n--- log tail ---\n"
                    + "\n".join(p.log()[-3000:] for p in started), pytrace=False)


@pytest.fixture(scope="session")
def postern_bin():
    """The `postern` admin command (beside posternd, or $POSTERN)."""
    p = px.find_postern()
    if not (os.path.isfile(p) and os.access(p, os.X_OK)):
        pytest.fail("postern binary not found or not executable: %s "
                    "(build it, or set POSTERN)" % p)
    return p


@pytest.fixture
def plugin():
    """plugin(NAME) -> the absolute path of the built NAME.so."""
    def find(name):
        try:
            return px.find_plugin(name)
        except px.PeerError as e:
            pytest.fail(str(e), pytrace=False)
    return find


@pytest.fixture
def counting_sink(tmp_path_factory):
    """smtp-sink -c: a backend that only counts messages (for load tests)."""
    d = tmp_path_factory.mktemp("csink")
    px.make_traversable(str(d))
    s = px.CountingSink(d)
    try:
        yield s.start()
    finally:
        s.stop()
