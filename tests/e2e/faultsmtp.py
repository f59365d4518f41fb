"""faultsmtp: a scripted fake SMTP (or LMTP) backend with named faults and
faults by recipient, and a client that records every reply per recipient.
It is the one fake backend of the e2e tests (conftest make_fault_backend);
tests that need a real MTA use Postfix or smtp-sink instead.

FaultSMTP runs in threads inside the test process, on 127.0.0.1 and a free
port. It reads commands as they arrive and answers them in order (so a
pipelining client works), advertises a configurable EHLO (PIPELINING, SIZE,
8BITMIME, ENHANCEDSTATUSCODES by default), and records every message it
*delivered*: one it answered 250 to after a complete "." (the final reply
written out). Each record carries the envelope of that transaction (MAIL
FROM and exactly the RCPTs it accepted in it) and the Message-ID.

Faults are named; which one a transaction gets is chosen per transaction
(default), per connection, by a list, by a seeded RNG, or by a callable:

  none                      a normal transaction
  idle_close_between_rcpts  after the N-th RCPT reply (N = rcpt_n, default
                            1) wait idle_delay s, then "421 4.4.2 ... timeout"
                            and close, whatever arrived meanwhile (an idle
                            timeout firing between two RCPTs)
  close_after_first_rcpt    close right after the 1st RCPT reply
  close_after_rcpt_n        close right after the N-th RCPT reply
  421_at_second_rcpt        "421 4.3.2 shutting down" to the 2nd RCPT, close
  tempfail_second_rcpt      "450 4.2.1" to the 2nd RCPT (no close): a control
  421_at_data               "421 4.3.2" to DATA, close
  close_at_data             close at DATA, no reply
  eod_tempfail              "451 4.3.0" after the complete "."
  early_552                 after 354, read early_kb KiB of the body, then
                            "552 5.3.4 too big" before the terminator (early_kb
                            = 0: in the same write as the 354); then
                            discard up to "." (early_after="discard") or
                            close (early_after="close")
  early_250                 the same with "250 2.0.0 Ok" (never delivered:
                            the "." was not seen)
  trickle_final             after ".", a multi-line 250 one continuation line
                            every trickle_interval s, trickle_lines lines,
                            then the last line (delivered only if that last
                            line went out)
  random                    per transaction, a seeded RNG picks one of
                            RANDOM_FAULTS (weights; "none" included)

Faults by recipient (always on, whatever the named fault): the local part
of a recipient chooses its RCPT reply, and the first recipient accepted in
a transaction chooses the DATA and end-of-data faults:

  rcpt-reject   550 5.1.1 at RCPT          rcpt-tempfail  450 4.2.1 at RCPT
  rcpt-garbage  "this is not a reply" to RCPT
  rcpt-drop     close at this RCPT (after earlier RCPTs got 250)
  stall-rcpt    no reply to RCPT           stall-data     no reply to DATA
  stall-eod     no reply at end of data    (each stalls until the peer goes)
  data-tempfail 451 4.3.0 at DATA          data-reject    554 5.3.0 at DATA
  data-250      250 (not 354) to DATA      drop-data      close at DATA
  drop-mid      close after 1 line of data drop-eod       close at end of data
  eod-tempfail  451 4.3.0 at end of data   eod-reject     554 5.6.0 at end of data
  eod-garbage   a line that is no reply at end of data
  eod-partial   "25" at end of data, then close
  eod-double    two 250 replies at end of data (one unsolicited)
  lmtp-short    (LMTP) only the first recipient's reply, then close
  (LMTP: eod-tempfail / eod-reject as any recipient's local part give that
  recipient's reply)

lmtp=True: an LMTP server (LHLO; EHLO is refused with 500, as SMTP's
LHLO is), with one reply per accepted recipient after the data.
refuse_ehlo=True: EHLO gets 502 (a server that knows only HELO).
tls=(cert, key): STARTTLS is offered (before TLS only) and served with
that certificate; the SNI name of every handshake (None when the client
sent none) is in self.sni. XCLIENT gets 220 (a new greeting, as Postfix
answers) and XFORWARD 250 when the EHLO list names them.

The body is read as a real MTA reads it: lines end at LF, a line "."
(CRLF) ends the data, a leading dot of any line is removed.

once_per_sender (default True): a fault fires at most once for a given MAIL
FROM; later transactions with that sender are normal (a backend that
restarted once), so a client or proxy that retries can succeed.

idle_timeout (default None): a server-wide idle timeout while a command is
awaited: nothing received for that long -> "421 4.4.2 idle timeout", close.
NOOP is answered 250 and counted (self.noops).

Every wait is bounded (io_timeout on every read, bounded loops); stop()
closes every socket and joins the threads with a bound.
"""

import hashlib
import random as _random
import re
import select
import socket
import ssl
import threading
import time

HOST = "127.0.0.1"

DEFAULT_EHLO = ("PIPELINING", "SIZE 104857600", "8BITMIME", "ENHANCEDSTATUSCODES")
# the proxy tests' backend (conftest make_fault_backend): no SIZE limit, SMTPUTF8
PROXY_EHLO = ("PIPELINING", "8BITMIME", "SIZE 0", "ENHANCEDSTATUSCODES", "SMTPUTF8")

FAULTS = ("none", "idle_close_between_rcpts", "close_after_first_rcpt", "close_after_rcpt_n",
          "421_at_second_rcpt", "tempfail_second_rcpt", "421_at_data", "close_at_data",
          "eod_tempfail", "early_552", "early_250", "trickle_final", "random")

# random's pool: (fault, weight, extra params)
RANDOM_FAULTS = (
    ("none", 40, {}),
    ("idle_close_between_rcpts", 8, {"rcpt_n": 1}),
    ("idle_close_between_rcpts", 6, {"rcpt_n": 2}),
    ("idle_close_between_rcpts", 4, {"rcpt_n": 3}),
    ("close_after_first_rcpt", 8, {}),
    ("close_after_rcpt_n", 5, {"rcpt_n": 2}),
    ("close_after_rcpt_n", 5, {"rcpt_n": 3}),
    ("421_at_second_rcpt", 8, {}),
    ("tempfail_second_rcpt", 5, {}),
    ("421_at_data", 4, {}),
    ("close_at_data", 3, {}),
    ("eod_tempfail", 4, {}),
)

BODY_CHUNK = 65536
STOP_WAIT = 10.0
STALL_MAX = 120.0


class _Closed(Exception):
    """The peer went away, a read timed out, or the server stops."""


class _Conn:
    def __init__(self, server, sock, no):
        self.server = server
        self.sock = sock
        self.no = no
        self.buf = bytearray()
        self.enhanced = any(k.upper() == "ENHANCEDSTATUSCODES" for k in server.ehlo)
        self.tls = False

    # ------------------------------------------------------------ I/O --
    def _recv(self, timeout):
        """One recv with a bound; b"" never returned (raises _Closed)."""
        if self.server.stop_event.is_set():
            raise _Closed("server stopping")
        deadline = time.monotonic() + timeout
        for _ in range(int(timeout / 0.2) + 2):
            left = deadline - time.monotonic()
            if left <= 0 or self.server.stop_event.is_set():
                break
            # TLS: decrypted bytes may wait in the SSL object, unseen by select
            pending = self.tls and self.sock.pending() > 0
            r = pending or select.select([self.sock], [], [], min(0.2, left))[0]
            if not r:
                continue
            try:
                chunk = self.sock.recv(BODY_CHUNK)
            except OSError as e:
                raise _Closed("recv: %s" % e)
            if not chunk:
                raise _Closed("peer closed")
            return chunk
        raise socket.timeout("read timed out")

    def readline(self, timeout=None):
        """A command line (bytes, with its LF); socket.timeout after timeout."""
        timeout = self.server.io_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        for _ in range(100000):
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[:i + 1])
                del self.buf[:i + 1]
                return line
            if len(self.buf) > 65536:
                raise _Closed("command line too long")
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("read timed out")
            self.buf += self._recv(left)
        raise _Closed("too many reads")

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        try:
            self.sock.sendall(data)
        except OSError as e:
            raise _Closed("send: %s" % e)

    def reply(self, code, esc, text, more=()):
        """One reply; more = continuation texts before the last line."""
        lines = list(more) + [text]
        out = []
        for i, l in enumerate(lines):
            sep = "-" if i < len(lines) - 1 else " "
            out.append("%d%s%s%s\r\n" % (code, sep, (esc + " ") if esc and self.enhanced else "", l))
        self.send("".join(out))

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass

    def sleep(self, seconds):
        """Sleep, bounded, waking when the server stops."""
        self.server.stop_event.wait(seconds)
        if self.server.stop_event.is_set():
            raise _Closed("server stopping")

    # ------------------------------------------------------------ body --
    def read_body(self, fault, params, txn):
        """After 354: read up to and including CRLF.CRLF. Returns
        (complete, unstuffed body bytes or None when not kept, size, early
        reply sent or None)."""
        srv = self.server
        early_at = int(params.get("early_kb", srv.early_kb) * 1024)
        early = None
        go = "354 End data with <CR><LF>.<CR><LF>\r\n"
        if fault in ("early_552", "early_250") and early_at == 0:
            # the early reply in the same write as the 354: the client has
            # it before it can have sent more than its first chunk
            early = fault[-3:]
            txn["early_reply"] = early
            self.send(go + ("552 5.3.4 Error: message too big (early reply from faultsmtp)\r\n"
                            if early == "552" else
                            "250 2.0.0 Ok: early reply from faultsmtp (no terminator seen)\r\n"))
            if params.get("early_after", srv.early_after) == "close":
                raise _Closed("closed after the early reply")
        else:
            self.send(go)
        data = bytearray(b"\r\n")          # a virtual CRLF: ".\r\n" at once matches too
        data += self.buf
        self.buf = bytearray()
        deadline = time.monotonic() + srv.io_timeout
        pos = 0
        for _ in range(10000000):
            end = data.find(b"\n.\r\n", max(0, pos - 4))
            if end >= 0:
                # a line "." ends the data, whatever ended the line before
                rest = data[end + 4:]
                self.buf = bytearray(rest)
                body = bytes(data[2:end + 1])
                return True, body, len(body), early
            pos = len(data)
            if early is None and fault in ("early_552", "early_250") and len(data) - 2 >= early_at:
                if fault == "early_552":
                    early = "552"
                    self.reply(552, "5.3.4", "Error: message too big (early reply from faultsmtp)")
                else:
                    early = "250"
                    self.reply(250, "2.0.0", "Ok: early reply from faultsmtp (no terminator seen)")
                txn["early_reply"] = early
                if params.get("early_after", srv.early_after) == "close":
                    raise _Closed("closed after the early reply")
                # discard mode: keep only a tail, to find the terminator
                data = bytearray(data[-8:])
                pos = len(data)
            if early is not None and len(data) > 1 << 20:
                data = bytearray(data[-8:])
                pos = len(data)
            left = deadline - time.monotonic()
            if left <= 0:
                raise _Closed("body read timed out")
            chunk = self._recv(left)
            deadline = time.monotonic() + srv.io_timeout
            data += chunk
        raise _Closed("body too long")

    # ------------------------------------------------------- session --
    def run(self):
        srv = self.server
        self.reply(220, "", "faultsmtp.test ESMTP faultsmtp")
        self.txn = None
        for _ in range(1000000):
            try:
                line = self.readline(srv.idle_timeout if srv.idle_timeout else None)
            except socket.timeout:
                if srv.idle_timeout:
                    srv._note("conn %d: idle timeout" % self.no)
                    self.reply(421, "4.4.2", "faultsmtp.test Error: idle timeout exceeded")
                    return
                raise _Closed("command read timed out")
            cmdline = line.rstrip(b"\r\n").decode("utf-8", "replace")
            verb = cmdline.split(" ", 1)[0].upper()
            with srv.lock:
                srv.commands.append((self.no, cmdline))
            handler = getattr(self, "_cmd_" + verb.lower(), None) if verb.isalpha() else None
            if handler is None:
                self.reply(502, "5.5.2", "Error: command not recognized")
            elif handler(cmdline) == "close":
                return

    # ------------------------------------------------------- commands --
    # each answers one command; "close" ends the session (the socket closes)

    def _cmd_ehlo(self, cmdline, verb="EHLO"):
        srv = self.server
        if verb == "EHLO" and srv.refuse_ehlo:
            self.reply(502, "5.5.2", "Error: command not recognized")
            return None
        if verb != "HELO" and (verb == "LHLO") != srv.lmtp:
            self.reply(500, "5.5.1", "Error: wrong greeting command")
            return None
        lines = ["faultsmtp.test"]
        if verb != "HELO":
            lines += list(srv.ehlo)
            if srv.tls is not None and not self.tls:
                lines.append("STARTTLS")
        self.reply(250, "", lines[-1], more=lines[:-1])
        self.txn = None
        return None

    def _cmd_helo(self, cmdline):
        return self._cmd_ehlo(cmdline, "HELO")

    def _cmd_lhlo(self, cmdline):
        return self._cmd_ehlo(cmdline, "LHLO")

    def _cmd_starttls(self, cmdline):
        srv = self.server
        if srv.tls is None or self.tls:
            self.reply(502, "5.5.2", "Error: command not recognized")
            return None
        self.reply(220, "2.0.0", "Ready to start TLS")
        self.buf = bytearray()            # plaintext pipelined behind STARTTLS: gone
        self.sock.settimeout(srv.io_timeout)
        try:
            self.sock = srv.tls_context().wrap_socket(self.sock, server_side=True)
        except (ssl.SSLError, OSError) as e:
            raise _Closed("TLS handshake: %s" % e)
        self.tls = True
        self.txn = None
        return None

    def _cmd_xclient(self, cmdline):
        self.reply(220, "", "faultsmtp.test ESMTP faultsmtp")
        self.txn = None
        return None

    def _cmd_xforward(self, cmdline):
        self.reply(250, "2.0.0", "Ok")
        return None

    def _cmd_mail(self, cmdline):
        srv = self.server
        if self.txn is not None:
            self.reply(503, "5.5.1", "Error: nested MAIL command")
            return None
        m = re.search(r"<([^>]*)>", cmdline)
        mail_from = m.group(1) if m else ""
        fault, params = srv._choose(self.no, mail_from)
        self.txn = {"conn": self.no, "mail_from": mail_from, "fault": fault, "params": params,
                    "rcpts": [], "rcpt_seen": 0, "outcome": None, "local": None}
        with srv.lock:
            srv.transactions.append(self.txn)
        self.reply(250, "2.1.0", "Ok")
        return None

    def _cmd_rcpt(self, cmdline):
        srv, txn = self.server, self.txn
        if txn is None:
            self.reply(503, "5.5.1", "Error: need MAIL command")
            return None
        m = re.search(r"<([^>]*)>", cmdline)
        rcpt = m.group(1) if m else ""
        local = rcpt.split("@")[0]
        if local == "rcpt-reject":
            self.reply(550, "5.1.1", "<%s>: rejected by faultsmtp" % rcpt)
            return None
        if local == "rcpt-tempfail":
            self.reply(450, "4.2.1", "<%s>: tempfailed by faultsmtp" % rcpt)
            return None
        if local == "stall-rcpt":
            self._stall()
            return "close"
        if local == "rcpt-drop":
            return "close"
        if local == "rcpt-garbage":
            self.send("this is not a reply\r\n")
            return None
        txn["rcpt_seen"] += 1
        n = txn["rcpt_seen"]
        f, p = txn["fault"], txn["params"]
        if n == 2 and f == "421_at_second_rcpt":
            txn["outcome"] = "421 at RCPT 2"
            self.reply(421, "4.3.2", "faultsmtp.test shutting down")
            return "close"
        if n == 2 and f == "tempfail_second_rcpt":
            self.reply(450, "4.2.1", "<%s>: mailbox busy (faultsmtp)" % rcpt)
            return None
        txn["rcpts"].append(rcpt)
        if txn["local"] is None:
            txn["local"] = local
        self.reply(250, "2.1.5", "Ok")
        if f == "close_after_first_rcpt" and n == 1:
            txn["outcome"] = "closed after RCPT 1"
            return "close"
        if f == "close_after_rcpt_n" and n == p.get("rcpt_n", srv.rcpt_n):
            txn["outcome"] = "closed after RCPT %d" % n
            return "close"
        if f == "idle_close_between_rcpts" and n == p.get("rcpt_n", srv.rcpt_n):
            self.sleep(p.get("idle_delay", srv.idle_delay))
            txn["outcome"] = "idle timeout after RCPT %d" % n
            self.reply(421, "4.4.2", "faultsmtp.test Error: timeout exceeded")
            return "close"
        return None

    def _cmd_data(self, cmdline):
        txn = self.txn
        if txn is None:
            self.reply(503, "5.5.1", "Error: need MAIL command")
            return None
        if not txn["rcpts"]:
            self.reply(554, "5.5.1", "Error: no valid recipients")
            return None
        f, local = txn["fault"], txn["local"]
        if local == "data-tempfail":
            self.reply(451, "4.3.0", "DATA tempfailed by faultsmtp")
            return None
        if local == "data-reject":
            self.reply(554, "5.3.0", "DATA rejected by faultsmtp")
            return None
        if local == "data-250":
            self.reply(250, "2.0.0", "DATA? fine")
            return None
        if local == "stall-data":
            self._stall()
            return "close"
        if f == "421_at_data":
            txn["outcome"] = "421 at DATA"
            self.reply(421, "4.3.2", "faultsmtp.test shutting down")
            return "close"
        if f == "close_at_data" or local == "drop-data":
            txn["outcome"] = "closed at DATA"
            return "close"
        if local == "drop-mid":
            self.send("354 End data with <CR><LF>.<CR><LF>\r\n")
            self.readline()
            self.readline()
            txn["outcome"] = "closed after a line of data"
            return "close"
        complete, body, size, early = self.read_body(f, txn["params"], txn)
        self.txn = None
        if early is not None:
            txn["outcome"] = "early %s, terminator read" % early
            return None                # that early reply was the only one
        return self._end_of_data(txn, body, size)

    def _end_of_data(self, txn, body, size):
        """The reply (LMTP: replies) after a complete "." """
        srv, f, local = self.server, txn["fault"], txn["local"]
        if local == "drop-eod":
            return "close"
        if local == "stall-eod":
            self._stall()
            return "close"
        if local == "eod-garbage":
            self.send("hello there\r\n")
            return None
        if local == "eod-partial":
            self.send("25")
            return "close"
        if srv.lmtp:
            return self._lmtp_replies(txn, body, size)
        if f == "eod_tempfail" or local == "eod-tempfail":
            txn["outcome"] = "451 at end of data"
            self.reply(451, "4.3.0", "Error: end of data tempfailed (faultsmtp)")
            return None
        if local == "eod-reject":
            txn["outcome"] = "554 at end of data"
            self.reply(554, "5.6.0", "end of data rejected by faultsmtp")
            return None
        rec = srv._record(txn, body, size)
        if f == "trickle_final":
            self._trickle(txn, rec)
            return None
        # commit before the 250, as a real MTA does (and so that a
        # test reading deliveries right after the 250 sees it)
        srv._commit(txn, rec)
        self.reply(250, "2.0.0", "Ok: queued as %s" % rec["queue_id"])
        if local == "eod-double":
            self.reply(250, "2.0.0", "unsolicited extra reply")
        return None

    def _lmtp_replies(self, txn, body, size):
        """LMTP: one reply per accepted recipient, chosen by its local part"""
        srv = self.server
        replies, ok = [], []
        for r in txn["rcpts"]:
            lp = r.split("@")[0]
            if lp == "eod-tempfail" or txn["fault"] == "eod_tempfail":
                replies.append((451, "4.3.0", "<%s> tempfailed by faultsmtp" % r))
            elif lp == "eod-reject":
                replies.append((554, "5.6.0", "<%s> rejected by faultsmtp" % r))
            else:
                replies.append((250, "2.0.0", "<%s> Ok" % r))
                ok.append(r)
        short = "lmtp-short" in (r.split("@")[0] for r in txn["rcpts"])
        if short:
            replies = replies[:1]          # then the connection drops
            ok = ok[:1] if replies[0][0] == 250 else []
        if ok:
            rec = srv._record(dict(txn, rcpts=ok), body, size)
            srv._commit(txn, rec)         # committed before the replies go out
        else:
            txn["outcome"] = "refused at end of data"
        for code, esc, text in replies:
            self.reply(code, esc, text)
        return "close" if short else None

    def _cmd_rset(self, cmdline):
        self.txn = None
        self.reply(250, "2.0.0", "Ok")
        return None

    def _cmd_noop(self, cmdline):
        with self.server.lock:
            self.server.noops += 1
        self.reply(250, "2.0.0", "Ok")
        return None

    def _cmd_quit(self, cmdline):
        self.reply(221, "2.0.0", "Bye")
        return "close"

    def _stall(self):
        """Send nothing until the peer closes (bounded; wakes when the server stops)."""
        deadline = time.monotonic() + STALL_MAX
        for _ in range(int(STALL_MAX / 0.2) + 2):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                self._recv(min(left, 1.0))
            except socket.timeout:
                continue

    def _trickle(self, txn, rec):
        srv = self.server
        p = txn["params"]
        n = int(p.get("trickle_lines", srv.trickle_lines))
        interval = float(p.get("trickle_interval", srv.trickle_interval))
        for i in range(n):
            self.send("250-%strickle line %d\r\n" % ("2.0.0 " if self.enhanced else "", i + 1))
            # wait interval; stop if the peer closes
            deadline = time.monotonic() + interval
            for _ in range(int(interval / 0.1) + 2):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                if srv.stop_event.is_set():
                    raise _Closed("server stopping")
                r, _, _ = select.select([self.sock], [], [], min(0.1, left))
                if r:
                    try:
                        chunk = self.sock.recv(BODY_CHUNK)
                    except OSError as e:
                        raise _Closed("recv: %s" % e)
                    if not chunk:
                        txn["outcome"] = "peer left during the trickle (after %d lines)" % (i + 1)
                        raise _Closed("peer closed during the trickle")
                    self.buf += chunk
        txn["outcome"] = "trickled %d lines, then 250" % n
        srv._commit(txn, rec)
        self.reply(250, "2.0.0", "Ok: queued as %s (after the trickle)" % rec["queue_id"])


class FaultSMTP:
    """The fake backend. See the module docstring for the faults.

    fault      a name (every transaction), or a list: the i-th transaction
               (per="transaction") or connection (per="connection") gets
               fault[i], "none" after the list; "random" uses seed
    choose     callable(conn_no, txn_no, mail_from) -> name or (name, params);
               overrides fault
    lmtp, refuse_ehlo, tls: see the module docstring

    What it saw: delivered() / accepted (the committed messages: dicts with
    mail_from, rcpts, data, message_id, ...), commands / seen_commands,
    transactions, connections / sessions, sni, noops.
    """

    def __init__(self, fault="none", per="transaction", seed=0, choose=None,
                 once_per_sender=True, ehlo=DEFAULT_EHLO, idle_timeout=None,
                 io_timeout=30.0, rcpt_n=1, idle_delay=0.2, early_kb=64,
                 early_after="discard", trickle_lines=60, trickle_interval=1.0,
                 keep_data_max=256 * 1024, port=0, lmtp=False, refuse_ehlo=False,
                 tls=None):
        if isinstance(fault, str) and fault not in FAULTS:
            raise ValueError("unknown fault %r" % fault)
        if isinstance(fault, (list, tuple)):
            for f in fault:
                if f not in FAULTS:
                    raise ValueError("unknown fault %r" % f)
        self.fault = fault
        self.per = per
        self.seed = seed
        self.choose = choose
        self.once_per_sender = once_per_sender
        self.ehlo = list(ehlo)
        self.idle_timeout = idle_timeout
        self.io_timeout = io_timeout
        self.rcpt_n = rcpt_n
        self.idle_delay = idle_delay
        self.early_kb = early_kb
        self.early_after = early_after
        self.trickle_lines = trickle_lines
        self.trickle_interval = trickle_interval
        self.keep_data_max = keep_data_max
        self.want_port = port
        self.lmtp = lmtp
        self.refuse_ehlo = refuse_ehlo
        self.tls = tuple(tls) if tls is not None else None
        self.sni = []               # the SNI name of every TLS handshake (None: none sent)
        self._tls_ctx = None
        self.port = None
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.deliveries = []        # committed: see _record
        self.transactions = []      # every MAIL: conn, mail_from, fault, rcpts, outcome
        self.commands = []          # (conn_no, command line)
        self.notes = []
        self.noops = 0
        self.connections = 0
        self._fired = set()         # senders a fault already hit
        self._sender_txns = {}      # sender -> transactions seen
        self._conns = {}
        self._threads = []
        self._lsock = None
        self._queue_no = 0

    # ---------------------------------------------------------- control --
    def start(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((HOST, self.want_port))
        s.listen(128)
        s.settimeout(0.2)
        self._lsock = s
        self.port = s.getsockname()[1]
        t = threading.Thread(target=self._accept_loop, name="faultsmtp-accept", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self):
        self.stop_event.set()
        try:
            self._lsock.close()
        except (OSError, AttributeError):
            pass
        with self.lock:
            conns = list(self._conns.values())
        for c in conns:
            c.close()
        deadline = time.monotonic() + STOP_WAIT
        for t in list(self._threads):
            t.join(timeout=max(0.1, deadline - time.monotonic()))

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.stop()

    @property
    def address(self):
        return "%s:%d" % (HOST, self.port)

    @property
    def backend(self):
        return "smtp:" + self.address

    def open_connections(self):
        with self.lock:
            return len(self._conns)

    def tls_context(self):
        """The server context for STARTTLS (made once), recording SNI names."""
        with self.lock:
            if self._tls_ctx is None:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.load_cert_chain(*self.tls)
                ctx.sni_callback = lambda sock, name, c: self._note_sni(name)
                self._tls_ctx = ctx
            return self._tls_ctx

    def _note_sni(self, name):
        with self.lock:
            self.sni.append(name)

    @property
    def accepted(self):
        """The messages committed (as delivered(), a fresh list)."""
        return self.delivered()

    @property
    def seen_commands(self):
        """Every command line received, in order, over all connections."""
        with self.lock:
            return [c for _, c in self.commands]

    @property
    def sessions(self):
        """Connections accepted so far."""
        with self.lock:
            return self.connections

    # ------------------------------------------------------- internals --
    def _note(self, s):
        with self.lock:
            self.notes.append(s)

    def _accept_loop(self):
        for _ in range(10000000):
            if self.stop_event.is_set():
                return
            try:
                sock, _ = self._lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                self.connections += 1
                no = self.connections
                conn = _Conn(self, sock, no)
                self._conns[no] = conn
                # forget finished threads so the list stays short
                self._threads = [t for t in self._threads if t.is_alive()]
            t = threading.Thread(target=self._serve, args=(conn,), name="faultsmtp-%d" % no,
                                 daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, conn):
        try:
            conn.run()
        except (_Closed, socket.timeout, OSError) as e:
            self._note("conn %d: %s" % (conn.no, e))
        finally:
            conn.close()
            with self.lock:
                self._conns.pop(conn.no, None)

    def _choose(self, conn_no, mail_from):
        """The fault (and its params) for a new transaction."""
        with self.lock:
            txn_no = len(self.transactions)
            attempt = self._sender_txns.get(mail_from, 0)
            self._sender_txns[mail_from] = attempt + 1
            if self.once_per_sender and mail_from in self._fired:
                return "none", {}
        if self.choose is not None:
            r = self.choose(conn_no, txn_no, mail_from)
            name, params = (r, {}) if isinstance(r, str) else r
        elif isinstance(self.fault, (list, tuple)):
            i = (conn_no - 1) if self.per == "connection" else txn_no
            name, params = (self.fault[i] if i < len(self.fault) else "none"), {}
        else:
            name, params = self.fault, {}
        if name == "random":
            # keyed by (seed, sender, attempt): the same choice whatever the
            # interleaving of concurrent sessions
            h = hashlib.sha256(("%s|%s|%d" % (self.seed, mail_from, attempt)).encode()).digest()
            rng = _random.Random(h)
            total = sum(w for _, w, _ in RANDOM_FAULTS)
            x = rng.uniform(0, total)
            for f, w, p in RANDOM_FAULTS:
                x -= w
                if x <= 0:
                    name, params = f, dict(p)
                    break
            else:
                name, params = "none", {}
            params.setdefault("idle_delay", min(self.idle_delay, 0.05))
        if name != "none":
            with self.lock:
                self._fired.add(mail_from)
        return name, params

    def _record(self, txn, body, size):
        m = re.search(rb"(?im)^message-id:[ \t]*(\S+)", body[:65536].split(b"\r\n\r\n", 1)[0])
        body = re.sub(rb"(^|\n)\.", rb"\1", body)      # unstuff every line
        with self.lock:
            self._queue_no += 1
            qid = "FS%06d" % self._queue_no
        return {"conn": txn["conn"], "mail_from": txn["mail_from"], "rcpts": list(txn["rcpts"]),
                "message_id": m.group(1).decode("utf-8", "replace") if m else None,
                "size": len(body), "sha256": hashlib.sha256(body).hexdigest(),
                "data": body if len(body) <= self.keep_data_max else None,
                "queue_id": qid, "fault": txn["fault"]}

    def _commit(self, txn, rec):
        """The final 250 is about to go out: the message counts as delivered
        (committed first, as a real MTA commits to its queue before its 250)."""
        txn["outcome"] = txn["outcome"] or "delivered"
        with self.lock:
            self.deliveries.append(rec)

    # --------------------------------------------------------- queries --
    def delivered(self):
        with self.lock:
            return list(self.deliveries)

    def by_message_id(self):
        out = {}
        for d in self.delivered():
            out.setdefault(d["message_id"], []).append(d)
        return out

    def wait_idle(self, timeout=10.0):
        """Wait (bounded) until no connection is open."""
        deadline = time.monotonic() + timeout
        for _ in range(int(timeout / 0.05) + 1):
            if self.open_connections() == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        return self.open_connections() == 0


# ------------------------------------------------------------------ client --

class Reply:
    def __init__(self, code, lines):
        self.code = code
        self.lines = lines

    @property
    def ok(self):
        return 200 <= self.code < 300

    def __repr__(self):
        return "%d %s" % (self.code, " / ".join(self.lines))


class TxnResult:
    """One transaction as the client saw it."""

    def __init__(self, mail_from, rcpts, message_id):
        self.mail_from = mail_from
        self.rcpts = list(rcpts)
        self.message_id = message_id
        self.mail = None
        self.rcpt_replies = [None] * len(rcpts)   # Reply, or None (never came)
        self.data = None            # the reply to DATA
        self.final = None           # the end-of-data reply (None if none came)
        self.error = None           # why the session broke, if it did
        self.t_dot = None           # monotonic time the body was sent
        self.t_final = None

    @property
    def decided_ok(self):
        """The message got a 2xx final reply."""
        return self.final is not None and self.final.ok

    def acked_rcpts(self):
        """Recipients the client may forget: 2xx RCPT in a transaction whose
        final DATA reply was 2xx."""
        if not self.decided_ok or self.mail is None or not self.mail.ok:
            return []
        return [a for a, r in zip(self.rcpts, self.rcpt_replies) if r is not None and r.ok]

    def __repr__(self):
        return "<txn %s %s mail=%s rcpt=%s data=%s final=%s err=%s>" % (
            self.message_id, self.mail_from, self.mail,
            list(zip(self.rcpts, self.rcpt_replies)), self.data, self.final, self.error)


class SessionBroken(Exception):
    pass


def make_message(message_id, subject="faultsmtp", body_lines=None, size=None):
    """A CRLF message; size gives an approximate body size in bytes (lines of
    76 characters, some starting with a dot)."""
    head = ("From: Sender <sender@client.test>\r\nTo: Rcpts <rcpts@example.test>\r\n"
            "Subject: %s\r\nMessage-ID: %s\r\nDate: Sun, 01 Jan 2023 00:00:00 +0000\r\n\r\n"
            % (subject, message_id)).encode()
    if size is None:
        body = b"".join(l + b"\r\n" for l in (body_lines or [b"Hello.", b".dot line", b"end"]))
    else:
        line = (b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_=+0123456789")
        n = max(1, size // (len(line) + 2))
        body = b"".join((b"." if i % 97 == 0 else b"") + line + b"\r\n" for i in range(n))
    return head + body


def stuffed(message):
    if message.startswith(b"."):
        message = b"." + message
    message = message.replace(b"\r\n.", b"\r\n..")
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    return message + b".\r\n"


class RecordingClient:
    """An SMTP client that records every reply per recipient.

    transaction() sends MAIL, the RCPTs and DATA in one write (pipelined),
    then the message after 354, and records each reply. pause_after_rcpt=k
    (with pause seconds) sends MAIL and the first k RCPTs, reads their
    replies, sleeps, then the rest (still pipelined).
    """

    def __init__(self, port, host=HOST, timeout=30.0, helo="client.test"):
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.broken = None
        self.need_rset = False
        self.greeting = self.reply()
        self.send(b"EHLO %s\r\n" % helo.encode())
        self.ehlo = self.reply()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        try:
            self.sock.sendall(data)
        except OSError as e:
            self.broken = "send: %s" % e
            raise SessionBroken(self.broken)

    def reply(self, timeout=None):
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        lines, code = [], None
        for _ in range(1000):
            for _ in range(100000):
                i = self.buf.find(b"\n")
                if i >= 0:
                    break
                try:
                    chunk = self.sock.recv(65536)
                except socket.timeout:
                    self.broken = "no reply within %.1fs" % (self.timeout if timeout is None
                                                             else timeout)
                    raise SessionBroken(self.broken)
                except OSError as e:
                    self.broken = "recv: %s" % e
                    raise SessionBroken(self.broken)
                if not chunk:
                    self.broken = "connection closed by server"
                    raise SessionBroken(self.broken)
                self.buf += chunk
            raw, self.buf = self.buf[:i + 1], self.buf[i + 1:]
            m = re.match(rb"^([2-5][0-9][0-9])([- ])(.*?)\r?\n$", raw, re.S)
            if not m:
                self.broken = "malformed reply line %r" % raw
                raise SessionBroken(self.broken)
            c = int(m.group(1))
            if code is not None and c != code:
                self.broken = "code changes within a reply: %r" % raw
                raise SessionBroken(self.broken)
            code = c
            lines.append(m.group(3).decode("utf-8", "replace"))
            if m.group(2) == b" ":
                return Reply(code, lines)
        self.broken = "reply with too many lines"
        raise SessionBroken(self.broken)

    def transaction(self, mail_from, rcpts, message, message_id=None, pause_after_rcpt=None,
                    pause=0.0, body_pacer=None, final_timeout=None):
        """One transaction; returns a TxnResult (the session may be broken
        afterwards: see self.broken). body_pacer(sock_send, payload) sends
        the payload itself (for slow uploads)."""
        mid = message_id
        if mid is None:
            m = re.search(rb"(?im)^message-id:[ \t]*(\S+)", message)
            mid = m.group(1).decode() if m else None
        res = TxnResult(mail_from, rcpts, mid)
        cmds = [b"MAIL FROM:<%s>\r\n" % mail_from.encode()]
        cmds += [b"RCPT TO:<%s>\r\n" % r.encode() for r in rcpts]
        cmds.append(b"DATA\r\n")
        if self.need_rset:
            cmds.insert(0, b"RSET\r\n")
        try:
            split = 1 + len(rcpts) + 1 if pause_after_rcpt is None else 1 + pause_after_rcpt
            if self.need_rset:
                split += 1
            self.send(b"".join(cmds[:split]))
            if self.need_rset:
                self.reply()                 # RSET's 250 (any code is fine)
                self.need_rset = False
            res.mail = self.reply()
            self.need_rset = True
            k = 0
            if pause_after_rcpt is not None:
                for k in range(pause_after_rcpt):
                    res.rcpt_replies[k] = self.reply()
                k = pause_after_rcpt
                time.sleep(pause)
                self.send(b"".join(cmds[split:]))
            for j in range(k, len(rcpts)):
                res.rcpt_replies[j] = self.reply()
            res.data = self.reply()
            if res.data.code != 354:
                return res
            payload = stuffed(message)
            if body_pacer is not None:
                body_pacer(self.send, payload)
            else:
                self.send(payload)
            res.t_dot = time.monotonic()
            res.final = self.reply(final_timeout)
            res.t_final = time.monotonic()
            self.need_rset = False
        except SessionBroken as e:
            res.error = str(e)
        return res

    def quit(self):
        if self.broken is None:
            try:
                self.send(b"QUIT\r\n")
                self.reply(5.0)
            except SessionBroken:
                pass
        self.close()


def run_sessions(port, plan, per_session, threads=1, timeout=30.0, pause_after_rcpt=None,
                 pause=0.0, deadline=None):
    """Send plan (a list of (mail_from, rcpts, message)) through port in
    sessions of per_session transactions, over `threads` concurrent lanes.
    A broken session is replaced by a new one. Returns the TxnResults in
    plan order; a transaction never attempted (deadline passed) is absent."""
    results = [None] * len(plan)
    lanes = [list(range(i, len(plan), threads)) for i in range(threads)]
    errors = []

    def lane(idx):
        todo = list(idx)
        c = None
        done_in_session = 0
        try:
            for _ in range(len(todo) * 2 + 10):
                if not todo or (deadline is not None and time.monotonic() > deadline):
                    break
                if c is None or c.broken is not None or done_in_session >= per_session:
                    if c is not None:
                        c.quit()
                    try:
                        c = RecordingClient(port, timeout=timeout)
                    except (OSError, SessionBroken) as e:
                        errors.append("connect: %s" % e)
                        time.sleep(0.1)
                        continue
                    done_in_session = 0
                i = todo.pop(0)
                mail_from, rcpts, message = plan[i]
                results[i] = c.transaction(mail_from, rcpts, message,
                                           pause_after_rcpt=pause_after_rcpt, pause=pause)
                done_in_session += 1
        finally:
            if c is not None:
                c.quit()

    ts = [threading.Thread(target=lane, args=(l,), daemon=True) for l in lanes]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=(deadline - time.monotonic() + 30) if deadline else 600)
    return results, errors


# --------------------------------------------------------- accounting ---

def account(results, backend, summaries=None):
    """Compare what the client was told with what the backend delivered and
    (optionally) with posternd's summary lines. Returns a dict of problem
    lists (empty lists = all agree) and counts."""
    by_mid = backend.by_message_id()
    lost, extra, dup, unacked_delivery = [], [], [], []
    acked_total = 0
    for r in results:
        if r is None:
            continue
        acked = r.acked_rcpts()
        copies = by_mid.get(r.message_id, [])
        at_backend = [x for d in copies for x in d["rcpts"]]
        if r.decided_ok:
            acked_total += len(acked)
            for a in acked:
                if a not in at_backend:
                    lost.append("%s: %s acknowledged (RCPT %s, final %s) but not at the "
                                "backend (backend has %s)" % (r.message_id, a,
                                                              r.rcpt_replies[r.rcpts.index(a)],
                                                              r.final, at_backend))
            for a in set(at_backend) - set(acked):
                extra.append("%s: %s at the backend but its RCPT got %s" % (
                    r.message_id, a, r.rcpt_replies[r.rcpts.index(a)] if a in r.rcpts else "?"))
            if len(copies) > 1 or len(at_backend) != len(set(at_backend)):
                dup.append("%s: delivered %d times: %s" % (
                    r.message_id, len(copies), [d["rcpts"] for d in copies]))
        elif copies:
            unacked_delivery.append("%s: client got %s (error %s) but the backend delivered "
                                    "it to %s" % (r.message_id, r.final or r.data, r.error,
                                                  at_backend))
    summary_problems = []
    if summaries is not None:
        by_from = {}
        for s in summaries:
            by_from.setdefault(s.get("from", "").strip("<>"), []).append(s)
        for r in results:
            if r is None or r.data is None or r.data.code != 354:
                continue
            ss = by_from.get(r.mail_from, [])
            copies = by_mid.get(r.message_id, [])
            at_backend = sorted(x for d in copies for x in d["rcpts"])
            delivered = [s for s in ss if s.get("status") == "delivered"]
            if r.decided_ok:
                if len(delivered) != 1:
                    summary_problems.append("%s from=%s: %d summary lines with "
                                            "status=delivered: %s" % (
                                                r.message_id, r.mail_from, len(delivered),
                                                [s["line"] for s in ss]))
                    continue
                logged = sorted(x.strip("<>") for x in delivered[0].get("rcpt", "").split(",")
                                if x)
                if logged != at_backend:
                    summary_problems.append(
                        "%s: summary says delivered to %s, the backend has %s (line: %s)"
                        % (r.message_id, logged, at_backend, delivered[0]["line"]))
            elif delivered:
                summary_problems.append("%s: client got %s but a summary says delivered: %s"
                                        % (r.message_id, r.final, delivered[0]["line"]))
    return {"lost": lost, "extra": extra, "dup": dup, "unacked_delivery": unacked_delivery,
            "summary": summary_problems, "acked_total": acked_total}
