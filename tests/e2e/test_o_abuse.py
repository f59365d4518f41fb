"""o. Abuse and real senders (issue 7, must-show 4, 5 (client side) and 8):
every session ends and frees its fd and its connections_max slot (a TLS
handshake that never starts, a client that never reads); a client that
pipelines HELP without reading cannot grow posternd without bound; a client
sending one byte a second is closed at the command deadline; a TLS client
that sends its last message, QUIT and close_notify in one flight (as Exim
does) gets its message relayed; posternd ends a TLS session with its own
close_notify (seen by openssl s_client).

Evidence that a session was freed comes from posternd's side (its open fds
in /proc/PID/fd back to the baseline, a new client served) and from the
client's side (EOF or RST on its socket). Every wait is bounded."""

import os
import re
import select
import socket
import ssl
import subprocess
import time

import pytest

import pxtest as px
import pxtransport as pt

# The deadlines these tests configure, and how much later than a deadline a
# close may come (scheduling on a loaded 2-core machine, timer granularity).
COMMAND_TIMEOUT = 2.0
SLACK = 6.0
# Bound on posternd's growth while one client pipelines HELP without reading.
RSS_BOUND_MB = 32


# ------------------------------------------------------------- helpers ----

def proc_status_kb(pid, field):
    """A VmRSS/VmHWM-style field of /proc/PID/status, in kB (0 if absent)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def fd_count(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return -1


def fd_list(pid):
    out = []
    try:
        for n in os.listdir("/proc/%d/fd" % pid):
            try:
                out.append(os.readlink("/proc/%d/fd/%s" % (pid, n)))
            except OSError:
                pass
    except OSError:
        pass
    return sorted(out)


def settle_fd_baseline(d, timeout=5.0):
    """posternd's fd count once it stops changing (bounded)."""
    last, stable_since = fd_count(d.proc.pid), time.monotonic()
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / 0.05) + 1):
        time.sleep(0.05)
        n = fd_count(d.proc.pid)
        if n != last:
            last, stable_since = n, time.monotonic()
        elif time.monotonic() - stable_since >= 0.5 or time.monotonic() > deadline:
            break
    return last


def wait_fds_at_most(d, baseline, timeout):
    """Wait (bounded) until posternd holds at most `baseline` fds; returns
    the last count seen."""
    deadline = time.monotonic() + timeout
    n = fd_count(d.proc.pid)
    for _ in range(int(timeout / 0.05) + 2):
        n = fd_count(d.proc.pid)
        if n <= baseline or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return n


def session_ids_by_port(d):
    """{client port: session id} from posternd's "connect" log lines."""
    out = {}
    for line in d.lines():
        m = px.LOG_RE.match(line)
        if m and m.group(3).startswith("connect "):
            kv = px.parse_kv(m.group(3))
            if kv.get("port", "").isdigit():
                out[int(kv["port"])] = m.group(2)
    return out


def sessions_logged(d, ports):
    """For each client port: the session's connect/disconnect/tls log lines."""
    sids = session_ids_by_port(d)
    out = {}
    for p in ports:
        sid = sids.get(p)
        out[p] = [l for l in d.lines() if sid and (" %s " % sid) in l
                  and re.search(r" (connect|disconnect|tls) ", l)] if sid else ["(no session)"]
    return out


def wait_closed(sock, deadline, drain_max=64 << 20):
    """Read (bounded: until deadline, at most drain_max bytes) until the
    peer's EOF or RST. Returns ("eof"|"reset"|"open", bytes read, first
    bytes)."""
    got, head = 0, b""
    for _ in range(1000000):
        left = deadline - time.monotonic()
        if left <= 0:
            return "open", got, head
        sock.settimeout(left)
        try:
            b = sock.recv(65536)
        except ConnectionResetError:
            return "reset", got, head
        except (socket.timeout, BlockingIOError):
            return "open", got, head
        except OSError:
            return "reset", got, head
        if not b:
            return "eof", got, head
        got += len(b)
        if len(head) < 200:
            head += b[:200 - len(head)]
        if got > drain_max:
            return "open", got, head
    return "open", got, head


def peer_gone_without_reading(sock):
    """Without consuming data: has the peer reset or shut down its side?"""
    p = select.poll()
    p.register(sock, select.POLLERR | select.POLLHUP | getattr(select, "POLLRDHUP", 0x2000))
    ev = p.poll(0)
    return bool(ev) and bool(ev[0][1] & (select.POLLERR | select.POLLHUP
                                         | getattr(select, "POLLRDHUP", 0x2000)))


def small_rcvbuf_socket(port):
    """A plain TCP client with a tiny receive buffer (so that it takes
    little of posternd's output when it stops reading)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(10)
    s.connect((px.HOST, port))
    return s


def read_greeting(sock, timeout=10):
    """The first reply line on a raw socket (bounded)."""
    sock.settimeout(timeout)
    return pt.read_reply_line(sock)


def greet_and_ehlo(sock, timeout=10):
    """Greeting and EHLO on a raw socket (so that pipelining is allowed):
    the greeting line, or the first line that was not what it should be."""
    g = read_greeting(sock, timeout)
    if not g.startswith(b"220"):
        return g
    sock.sendall(b"EHLO client.test\r\n")
    for _ in range(100):
        l = pt.read_reply_line(sock)
        if not l.startswith(b"250"):
            return l
        if l[3:4] == b" ":
            return g
    return b"EHLO reply too long"


def pipeline_without_reading(socks, seconds, per_sock_max, line=b"HELP\r\n", sample=None):
    """Send `line` over and over on each socket (non-blocking, round robin),
    never reading, for at most `seconds` and per_sock_max bytes per socket.
    Returns ({sock: bytes sent}, {sock: "reset" or None}); calls sample()
    every 50 ms if given."""
    chunk = line * (8192 // len(line))
    sent = {s: 0 for s in socks}
    gone = {s: None for s in socks}
    for s in socks:
        s.setblocking(False)
    end = time.monotonic() + seconds
    next_sample = 0.0
    for _ in range(10000000):
        now = time.monotonic()
        if now > end:
            break
        if sample is not None and now >= next_sample:
            sample()
            next_sample = now + 0.05
        live = [s for s in socks if gone[s] is None and sent[s] < per_sock_max]
        if not live:
            break
        progressed = False
        for s in live:
            try:
                n = s.send(chunk)
                sent[s] += n
                progressed = progressed or n > 0
            except BlockingIOError:
                pass
            except OSError:
                gone[s] = "reset"
        if not progressed:
            select.select([], live, [], 0.05)
    for s in socks:
        s.setblocking(True)
    return sent, gone


def served(port, sink, sender):
    """A normal client's message is relayed: [] or the problems seen."""
    try:
        with px.SmtpClient(port, timeout=20) as c:
            g = c.greeting()
            if g.code != 220:
                return ["%s: greeting %r (slots still held?)" % (sender, g)]
            c.ehlo()
            if c.cmd("MAIL FROM:<%s>" % sender).code != 250 \
                    or c.cmd("RCPT TO:<user@example.test>").code != 250:
                return ["%s: MAIL/RCPT refused: %r" % (sender, c.transcript[-2:])]
            _, final = c.data(px.make_message())
            c.quit()
    except (OSError, px.SmtpError) as e:
        return ["%s: not served: %s" % (sender, e)]
    if final is None or final.code != 250:
        return ["%s: end of data got %r" % (sender, final)]
    if len(sink.wait_for(1, mail_from=sender, timeout=10)) != 1:
        return ["%s: message not at the backend" % sender]
    return []


def tls_settings(certs):
    return {"tls": {"certificate": [certs[0]], "key": [certs[1]]}}


@pytest.fixture
def cert(workdir):
    return pt.make_cert(workdir / "certs", "mx.test")


# ------------------------------------- 1. slots freed: TLS stall, no reader --

@pytest.mark.parametrize("phases", ["both", "non-readers-only"])
def test_stalled_handshakes_and_non_readers_free_their_slots(sink, make_posternd, cert, phases):
    """connections_max=3, timeouts.command=2s. Phase A: three clients open
    TCP to the implicit-TLS port and never send a byte of the handshake.
    Phase B: three plaintext clients pipeline HELP and never read. In each
    phase the three hold every slot (a fourth gets 421), and within the
    timeout (+ slack) posternd closes all three (EOF/RST at the client) and
    its fd count is back at the baseline. Then a fourth client is served.
    ("non-readers-only" runs phase B alone, so that it is judged even when
    phase A leaves the slots held.)"""
    port, tls_port = px.free_port(), px.free_port()
    s = tls_settings(cert)
    s['listener "smtps"'] = {"address": "127.0.0.1:%d" % tls_port, "tls": "implicit"}
    s["listen"] = ["127.0.0.1:%d" % port]
    s["log_level"] = "info"
    d = make_posternd("smtp:" + sink.address, settings=s, port=port, overrides=[
        "limits.connections_max=3", "timeouts.command=2s", "timeouts.data=2s",
        "timeouts.session=60s"])
    d.wait_log(r" disconnect ", 1, timeout=10)          # the harness's readiness probe
    # one plain and one TLS session first, so that what the first of each
    # opens for good (if anything) is in the baseline
    assert px.send_message(port, px.make_message(),
                           mail_from="warmup@client.test")["final"].code == 250
    with pt.Client(tls_port, implicit_tls=True) as w:
        assert w.greeting().code == 220
        w.quit()
    d.wait_log(r" disconnect ", 3, timeout=10)
    base = settle_fd_baseline(d)
    base_list = fd_list(d.proc.pid)
    problems = []

    def slots_full(what):
        """A client now must get 421 (all three slots held)."""
        c = socket.create_connection((px.HOST, port), timeout=10)
        try:
            line = read_greeting(c)
        finally:
            c.close()
        if not line.startswith(b"421"):
            problems.append("%s: an extra client got %r, not 421: the three did not "
                            "hold the slots" % (what, line))

    # --- phase A: TLS handshakes that never start
    if phases == "both":
        stalls = [socket.create_connection((px.HOST, tls_port), timeout=10) for _ in range(3)]
        t0 = time.monotonic()
        ports_a = [c.getsockname()[1] for c in stalls]
        # posternd has them all (so that the extra client cannot overtake one)
        px.wait_until(lambda: all(p in session_ids_by_port(d) for p in ports_a), 5,
                      "posternd to log the three TLS connections")
        slots_full("phase A (TLS stalls)")
        deadline = t0 + COMMAND_TIMEOUT + SLACK
        for c in stalls:
            how, n, head = wait_closed(c, deadline)
            if how == "open":
                problems.append("phase A: TLS client port %d not closed by posternd %.1f s "
                                "after connecting (timeouts.command=2s)"
                                % (c.getsockname()[1], time.monotonic() - t0))
        for c in stalls:
            c.close()       # ours closed now too: only posternd can still hold its fd
        n = wait_fds_at_most(d, base, 5)
        if n > base:
            problems.append("phase A: posternd holds %d fds, baseline %d, after the TLS stalls "
                            "(extra: %s); sessions: %s"
                            % (n, base, sorted(set(fd_list(d.proc.pid)) - set(base_list)),
                               sessions_logged(d, ports_a)))

    # --- phase B: plaintext clients that pipeline and never read
    readers = []
    for i in range(3):
        c = small_rcvbuf_socket(port)
        g = greet_and_ehlo(c)
        if not g.startswith(b"220"):
            problems.append("phase B: non-reader %d got %r instead of a greeting: slots "
                            "still held from phase A" % (i, g))
            c.close()
            continue
        readers.append(c)
    if readers:
        ports_b = [c.getsockname()[1] for c in readers]
        if len(readers) == 3:
            slots_full("phase B (non-readers)")
        sent, gone = pipeline_without_reading(readers, 1.5, 4 << 20)
        t1 = time.monotonic()
        # posternd's side first: nothing read by the clients yet
        n = wait_fds_at_most(d, base, COMMAND_TIMEOUT + SLACK)
        closed_after = time.monotonic() - t1
        if n > base:
            problems.append("phase B: posternd still holds %d fds (baseline %d) %.1f s "
                            "after the non-readers stopped sending (sent %s bytes); "
                            "sessions: %s" % (n, base, closed_after, list(sent.values()),
                                              sessions_logged(d, ports_b)))
        # the client's side: a reset, or EOF after what was buffered
        for c in readers:
            if gone[c] or peer_gone_without_reading(c):
                continue
            if n > base:
                break       # posternd did not let go: reading would only feed it
            how, got, head = wait_closed(c, time.monotonic() + 5)
            if how == "open":
                problems.append("phase B: non-reader port %d sees no EOF/RST after "
                                "reading %d bytes" % (c.getsockname()[1], got))
        for c in readers:
            c.close()

    # --- a fourth client is served
    problems += served(port, sink, "fourth@client.test")
    n = wait_fds_at_most(d, base, 5)
    if n > base:
        problems.append("at the end posternd holds %d fds, baseline %d" % (n, base))
    assert d.alive()
    assert not problems, "\n".join(problems)


# ---------------------------------------- 2. HELP pipelined, never read ----

def test_help_flood_without_reading_bounded_memory(sink, make_posternd):
    """A client pipelines HELP (about 3 s, at most 16 MB sent) and never
    reads. posternd's RSS (VmRSS sampled, and VmHWM) stays under the
    baseline + 32 MB; posternd closes the client within the write deadline
    (+ slack) after it stops sending (its fd count back at the baseline,
    EOF/RST at the client); and it keeps serving."""
    d = make_posternd("smtp:" + sink.address, settings={"log_level": "info"}, overrides=[
        "timeouts.command=2s", "timeouts.data=2s", "timeouts.session=60s"])
    pid = d.proc.pid
    d.wait_log(r" disconnect ", 1, timeout=10)
    # one normal session first, so its one-off allocations are in the baseline
    assert px.send_message(d.port, px.make_message(),
                           mail_from="warmup@client.test")["final"].code == 250
    base_fds = settle_fd_baseline(d)
    base_rss = proc_status_kb(pid, "VmRSS")
    base_hwm = proc_status_kb(pid, "VmHWM")
    peak = [base_rss]

    def sample():
        peak[0] = max(peak[0], proc_status_kb(pid, "VmRSS"))

    problems = []
    c = small_rcvbuf_socket(d.port)
    assert greet_and_ehlo(c).startswith(b"220")
    sent, gone = pipeline_without_reading([c], 3.0, 16 << 20, b"HELP\r\n", sample)
    t1 = time.monotonic()
    n = base_fds + 1
    deadline = t1 + COMMAND_TIMEOUT + SLACK
    for _ in range(int((COMMAND_TIMEOUT + SLACK) / 0.05) + 2):
        sample()
        n = fd_count(pid)
        if n <= base_fds or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    closed_after = time.monotonic() - t1
    sample()
    hwm = proc_status_kb(pid, "VmHWM")
    grew_mb = (max(peak[0], hwm) - max(base_rss, base_hwm)) / 1024.0
    if grew_mb > RSS_BOUND_MB:
        problems.append("posternd grew by %.0f MB (VmRSS peak %d kB, VmHWM %d kB, baseline "
                        "VmRSS %d kB / VmHWM %d kB) while the client sent %d bytes of HELP; "
                        "bound %d MB" % (grew_mb, peak[0], hwm, base_rss, base_hwm,
                                         sent[c], RSS_BOUND_MB))
    if n > base_fds:
        problems.append("posternd still holds the non-reading client's fd %.1f s after it "
                        "stopped sending (fds %d, baseline %d)" % (closed_after, n, base_fds))
    elif not gone[c] and not peer_gone_without_reading(c):
        how, got, _ = wait_closed(c, time.monotonic() + 5)
        if how == "open":
            problems.append("client sees no EOF/RST after reading %d bytes" % got)
    c.close()
    # keeps serving
    problems += served(d.port, sink, "after-help@client.test")
    assert d.alive()
    assert not problems, "\n".join(problems)


# ------------------------------------------- 3. one byte a second ----------

@pytest.mark.parametrize("form", ["ehlo", "mail"])
def test_one_byte_a_second_closed_at_command_deadline(sink, make_posternd, form):
    """timeouts.command=3s is a deadline for the whole command line, not an
    idle limit: a client that sends one byte a second (no CRLF) is closed
    (a 421 first is fine) about 3 s after it starts the line, long before
    timeouts.session (60 s)."""
    d = make_posternd("smtp:" + sink.address, overrides=[
        "timeouts.command=3s", "timeouts.session=60s"])
    c = px.SmtpClient(d.port)
    assert c.greeting().code == 220
    if form == "mail":
        assert c.ehlo().code == 250
        line = b"MAIL FROM:<" + b"s" * 60 + b"@client.test>"
    else:
        line = b"EHLO " + b"x" * 60
    sock = c.sock
    t0 = time.monotonic()
    got = b""
    closed_at = None
    how = None
    for i in range(9):                        # 9 bytes, 9 s at most
        try:
            sock.sendall(line[i:i + 1])
        except OSError:
            closed_at, how = time.monotonic() - t0, "send failed (reset)"
            break
        r, _, _ = select.select([sock], [], [], 1.0)
        if not r:
            continue
        try:
            b = sock.recv(4096)
        except OSError:
            closed_at, how = time.monotonic() - t0, "reset"
            break
        if not b:
            closed_at, how = time.monotonic() - t0, "eof"
            break
        got += b
    if closed_at is None and got:
        # a reply came (a 421): the close must follow promptly
        st, _, _ = wait_closed(sock, time.monotonic() + 3)
        if st != "open":
            closed_at, how = time.monotonic() - t0, st
    c.close()
    assert closed_at is not None, (
        "a client sending one byte a second was not closed within %.0f s with "
        "timeouts.command=3s (got %r)" % (time.monotonic() - t0, got))
    assert got == b"" or got.startswith(b"421 4."), got
    assert 2.0 <= closed_at <= 3.0 + 3.0, "closed %.1f s after the line began (%s)" % (
        closed_at, how)
    assert d.alive()


# -------------------------------- 4. message, QUIT, close_notify in one flight

class OneFlightTls:
    """TLS over a plain socket through memory BIOs, so that the test decides
    exactly what goes out when: write() only encrypts; close_notify()
    queues our alert; flight() sends everything queued in one sendall()."""

    def __init__(self, sock, server_name="mx.test"):
        self.sock = sock
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = pt.client_context().wrap_bio(self.inc, self.out,
                                                server_hostname=server_name)
        self.plain = b""
        self.end = None             # how the server ended: close_notify, eof, reset

    def flight(self):
        data = self.out.read()
        if data:
            self.sock.sendall(data)

    def _feed(self, deadline):
        self.sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            b = self.sock.recv(65536)
        except ConnectionResetError:
            self.end = self.end or "reset"
            b = b""
        if not b:
            self.end = self.end or "eof"
            self.inc.write_eof()
            return False
        self.inc.write(b)
        return True

    def handshake(self, timeout=20):
        deadline = time.monotonic() + timeout
        for _ in range(1000):
            try:
                self.obj.do_handshake()
                self.flight()
                return
            except ssl.SSLWantReadError:
                self.flight()
                if not self._feed(deadline):
                    raise ConnectionError("closed during the TLS handshake")
        raise AssertionError("TLS handshake did not finish")

    def write(self, data):
        self.obj.write(data)

    def close_notify(self):
        try:
            self.obj.unwrap()
        except ssl.SSLWantReadError:
            pass                    # sent ours; the peer's comes later (or not)

    def _pump(self, deadline):
        """Decrypt what is there; read more from the socket if nothing is.
        False when the server has ended (close_notify, EOF, reset)."""
        try:
            b = self.obj.read(65536)
            if b:
                self.plain += b
                return True
            self.end = self.end or "close_notify"
            return False
        except ssl.SSLZeroReturnError:
            self.end = self.end or "close_notify"
            return False
        except ssl.SSLWantReadError:
            if self.end:
                return False
            return self._feed(deadline)
        except (ssl.SSLError, OSError) as e:
            self.end = self.end or "error: %s" % e
            return False

    def reply(self, timeout=20):
        """One SMTP reply (all lines) as (code, text), or None at the end."""
        deadline = time.monotonic() + timeout
        for _ in range(100000):
            m = re.match(rb"(?:\d{3}-[^\n]*\n)*\d{3} [^\n]*\n", self.plain)
            if m:
                self.plain = self.plain[m.end():]
                text = m.group(0)
                last = text.rstrip(b"\r\n").split(b"\n")[-1]
                return int(last[:3]), text
            if time.monotonic() > deadline or not self._pump(deadline):
                return None
        return None

    def cmd(self, line):
        self.write(line.encode() + b"\r\n")
        self.flight()
        return self.reply()

    def rest(self, timeout=10):
        """Every reply until the server ends the session (bounded)."""
        out = []
        deadline = time.monotonic() + timeout
        for _ in range(100):
            r = self.reply(max(0.1, deadline - time.monotonic()))
            if r is None:
                break
            out.append(r)
        return out


def starttls_session(port):
    """A plain connection taken to TLS with STARTTLS (after EHLO), then EHLO
    again over TLS. Returns (OneFlightTls, EHLO keywords)."""
    s = socket.create_connection((px.HOST, port), timeout=20)
    f = s.makefile("rb")
    greeting = f.readline()
    assert greeting.startswith(b"220"), greeting
    s.sendall(b"EHLO client.test\r\n")
    for _ in range(100):
        l = f.readline()
        if l[3:4] != b"-":
            break
    s.sendall(b"STARTTLS\r\n")
    l = f.readline()
    assert l.startswith(b"220"), l
    f.close()               # the socket stays open (makefile holds a reference only)
    t = OneFlightTls(s)
    t.handshake()
    code, text = t.cmd("EHLO client.test")
    assert code == 250, text
    kw = set()
    for l in text.decode("utf-8", "replace").splitlines()[1:]:
        words = l[4:].split()
        if words:
            kw.add(words[0].upper())
    return t, kw


def one_flight_run(port, form, sender):
    """One session ending like Exim's: returns (codes of the replies read
    after the flight, how the server ended)."""
    t, kw = starttls_session(port)
    try:
        msg = px.make_message(subject="one flight " + sender)
        if form == "data":
            assert t.cmd("MAIL FROM:<%s>" % sender)[0] == 250
            assert t.cmd("RCPT TO:<user@example.test>")[0] == 250
            code, text = t.cmd("DATA")
            assert code == 354, text
            t.write(px.data_payload(msg) + b"QUIT\r\n")
        else:
            assert "CHUNKING" in kw, kw
            bdat = b"BDAT %d LAST\r\n" % len(msg) + msg + b"QUIT\r\n"
            if form == "bdat":
                assert t.cmd("MAIL FROM:<%s>" % sender)[0] == 250
                assert t.cmd("RCPT TO:<user@example.test>")[0] == 250
                t.write(bdat)
            else:           # bdat-pipelined: MAIL RCPT BDAT LAST QUIT close_notify
                t.write(b"MAIL FROM:<%s>\r\nRCPT TO:<user@example.test>\r\n"
                        % sender.encode() + bdat)
        t.close_notify()
        t.flight()                      # message, QUIT and close_notify: one write
        replies = t.rest()
        return [c for c, _ in replies], t.end
    finally:
        t.sock.close()


@pytest.mark.parametrize("form", ["data", "bdat", "bdat-pipelined"])
def test_last_message_quit_close_notify_in_one_flight(sink, make_posternd, cert, form):
    """20 of 20 runs: the message sent in the same flight as QUIT and our
    close_notify (STARTTLS session) is at the backend; the client, reading
    after its close_notify, gets the message's 250 and the 221."""
    d = make_posternd("smtp:" + sink.address, settings=tls_settings(cert))
    runs = 20
    senders = ["of-%s-%d@client.test" % (form, i) for i in range(runs)]
    results = []
    for s in senders:
        try:
            results.append(one_flight_run(d.port, form, s))
        except (OSError, AssertionError, ssl.SSLError) as e:
            results.append(("error", repr(e)))
    got = sink.wait_all(senders, timeout=5)
    delivered = [s for s in senders if len(got[s]) == 1]
    lost = [s for s in senders if not got[s]]
    assert not lost, "%d of %d one-flight messages (%s) not at the backend: %s; " \
        "replies/ends: %s" % (len(lost), runs, form, lost,
                              [r for s, r in zip(senders, results) if s in lost][:5])
    assert len(delivered) == runs, {s: len(v) for s, v in got.items()}
    want = [250, 250, 250, 221] if form == "bdat-pipelined" else [250, 221]
    bad = [(s, r) for s, r in zip(senders, results) if r[0] != want]
    assert not bad, "replies read after close_notify were not %s in %d of %d runs: %s" % (
        want, len(bad), runs, bad[:5])
    assert d.alive()


# ------------------------------------------- 5. our close_notify at QUIT --

CLOSE_NOTIFY_READ = re.compile(r"^<<< TLS [\d.]+, Alert \[length \d+\], warning close_notify$|"
                               r"^SSL3 alert read:warning:close notify$", re.M)


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_openssl_s_client_gets_our_close_notify(sink, make_posternd, cert, mode):
    """openssl s_client -msg -state, QUIT: the 221 arrives, then posternd's
    close_notify ("<<< ... Alert ..., warning close_notify")."""
    port, tls_port = px.free_port(), px.free_port()
    s = tls_settings(cert)
    s['listener "smtps"'] = {"address": "127.0.0.1:%d" % tls_port, "tls": "implicit"}
    s["listen"] = ["127.0.0.1:%d" % port]
    d = make_posternd("smtp:" + sink.address, settings=s, port=port)
    argv = [px.require("openssl"), "s_client", "-crlf", "-ign_eof", "-msg", "-state",
            "-servername", "mx.test"]
    if mode == "starttls":
        argv += ["-starttls", "smtp", "-connect", "127.0.0.1:%d" % port]
    else:
        argv += ["-connect", "127.0.0.1:%d" % tls_port]
    r = subprocess.run(argv, input="QUIT\n", capture_output=True, text=True, timeout=30)
    out = r.stdout + r.stderr
    assert "221 2.0.0" in r.stdout, out[-3000:]
    tail = out[out.find("221 2.0.0"):]
    assert CLOSE_NOTIFY_READ.search(tail), (
        "no close_notify from posternd after the 221; s_client's end:\n"
        + "\n".join(l for l in tail.splitlines() if not re.match(r"^    [0-9a-f]{2}( |$)", l))
        [-2500:])
    assert d.alive()
