"""A small authoritative DNS server for the e2e tests (Debian python3-dnslib).

It listens on 127.0.0.1, UDP and TCP on the same free port, in a thread of
the test process, and answers from the records it was given. It can answer
SERVFAIL for chosen names, HANG (never answer) for chosen names, DELAY
(answer late, after a number of seconds) for chosen names, and counts
the queries it received, per name and type, so a test can tell whether
Postern's resolver asked or answered from its cache.

Use it (the API is stable: the SPF, DKIM and DMARC tests build on it):

    from dnsserver import DNSServer

    records = {
        "example.net": [("TXT", "v=spf1 ip4:192.0.2.0/24 -all"),
                        ("MX", "10 mx.example.net."),
                        ("A", "192.0.2.1")],
        "_dmarc.example.net": [("TXT", "v=DMARC1; p=reject")],
        "sel._domainkey.example.net": [("TXT", "v=DKIM1; k=rsa; p=MIIB...")],
    }
    zone = '''
    $ORIGIN example.org.
    @      300 IN TXT "v=spf1 -all"
    www    300 IN A   192.0.2.80
    '''
    with DNSServer(records, zone=zone, servfail=["broken.example"],
                   hang=["*.slow.example"]) as dns:
        dns.addr                      # "127.0.0.1@PORT", for dns_forward
        dns.port
        posternd -o dns_forward=dns.addr ...
        dns.queries("example.net")           # how many queries, any type
        dns.queries("example.net", "TXT")    # of one type
        dns.add("new.example", "A", "192.0.2.9")     # records can change live
        dns.set_servfail("other.example")            # so can the failures
        dns.set_hang("dead.example")
        dns.set_delay("slow.example", 10)          # answered 10 s late
        dns.clear_failures()
        dns.reset_counts()

Records:
  - a dict {name: [(type, value), ...]} (a value may also be (type, value,
    ttl)); names are case-insensitive, with or without the final dot.
    A TXT value is the text itself (unquoted; a text over 255 bytes is
    split into several strings, as a DKIM key must be); a list or tuple of
    strings gives the strings explicitly. Other types take zone-file
    rdata: ("MX", "10 mx.example.net."), ("AAAA", "2001:db8::1"),
    ("PTR", "host.example."), ("CNAME", "target.example.").
  - and/or zone-file text (zone=...), parsed by dnslib (RR.fromZone).

Answers:
  - a name with records of the asked type: those (and a CNAME is followed
    within the server's own data);
  - a name that exists (it has records of another type, or names below it
    exist): NOERROR with no answer (NODATA), with an SOA in the authority
    section so that resolvers cache it (negative TTL `neg_ttl`);
  - any other name: NXDOMAIN, with the same SOA;
  - a name listed in servfail: SERVFAIL; in hang: no answer at all, ever.
    Patterns: an exact name, or "*.suffix" for every name below suffix
    (not suffix itself); both are checked before the records.
  - a name matching a pattern of delay ({pattern: seconds}): its answer
    (whatever it is) is sent that many seconds late; the server keeps
    answering other names meanwhile (one thread per query).
  - answers too big for the client's UDP size (512, or its EDNS size)
    are truncated (TC), so the client retries over TCP, which is served.

Run alone (for debugging with dig): /usr/bin/python3 dnsserver.py ZONEFILE
prints the port and serves until interrupted.
"""

import socket
import socketserver
import struct
import threading
import time

from dnslib import CLASS, QTYPE, RCODE, RR, SOA, TXT, DNSRecord

__all__ = ["DNSServer"]


def _norm(name):
    """Lower case, no final dot ("" for the root)."""
    name = str(name).strip().lower()
    return name[:-1] if name.endswith(".") else name


def _qtype(t):
    if isinstance(t, int):
        return t
    return getattr(QTYPE, str(t).upper())


def _txt_chunks(value):
    if isinstance(value, (list, tuple)):
        return [v.encode() if isinstance(v, str) else v for v in value]
    data = value.encode() if isinstance(value, str) else value
    return [data[i:i + 255] for i in range(0, len(data), 255)] or [b""]


class _Pattern:
    """A set of exact names and "*.suffix" patterns, changeable live."""

    def __init__(self, names=()):
        self.exact = set()
        self.suffixes = set()
        for n in names:
            self.add(n)

    def add(self, name):
        n = _norm(name)
        if n.startswith("*."):
            self.suffixes.add(n[2:])
        else:
            self.exact.add(n)

    def discard(self, name):
        n = _norm(name)
        self.exact.discard(n)
        self.suffixes.discard(n[2:] if n.startswith("*.") else n)

    def clear(self):
        self.exact.clear()
        self.suffixes.clear()

    def match(self, name):
        if name in self.exact:
            return True
        return any(name.endswith("." + s) for s in self.suffixes)


class DNSServer:
    """An authoritative test DNS server on 127.0.0.1 (UDP and TCP, one port).

    DNSServer(records=None, zone=None, servfail=(), hang=(), ttl=300,
              neg_ttl=300, port=0, delay=None)
    start() / stop(), or use it as a context manager. See the module's
    docstring for what it answers.
    """

    def __init__(self, records=None, zone=None, servfail=(), hang=(), ttl=300,
                 neg_ttl=300, port=0, delay=None):
        self.ttl = ttl
        self.neg_ttl = neg_ttl
        self._want_port = port
        self._lock = threading.Lock()
        self._rrs = {}            # name -> [RR]
        self._counts = {}         # (name, qtype int) -> n
        self.log = []             # (name, type name, transport), in arrival order
        self.servfail_names = _Pattern(servfail)
        self.hang_names = _Pattern(hang)
        self.delays = []          # [(_Pattern, seconds)]
        for name, secs in (delay or {}).items():
            self.set_delay(name, secs)
        self._udp = self._tcp = None
        self._threads = []
        self.port = None
        if records:
            for name, rrs in records.items():
                for rr in rrs:
                    self.add(name, *rr)
        if zone:
            self.add_zone(zone)

    # ---- records ----

    def add(self, name, rtype, value, ttl=None):
        """Add one record: add("a.example", "TXT", "text")."""
        ttl = self.ttl if ttl is None else ttl
        qt = _qtype(rtype)
        n = _norm(name)
        if qt == QTYPE.TXT:
            rr = RR(n + ".", QTYPE.TXT, CLASS.IN, ttl, TXT(_txt_chunks(value)))
        else:
            text = "%s. %d IN %s %s" % (n, ttl, QTYPE[qt], value)
            rr = RR.fromZone(text)[0]
        with self._lock:
            self._rrs.setdefault(n, []).append(rr)

    def add_zone(self, text):
        """Add every record of zone-file text."""
        for rr in RR.fromZone(text, ttl=self.ttl):
            with self._lock:
                self._rrs.setdefault(_norm(rr.rname), []).append(rr)

    def remove(self, name, rtype=None):
        """Drop the records of name (of one type, or all)."""
        n = _norm(name)
        with self._lock:
            if rtype is None:
                self._rrs.pop(n, None)
            else:
                qt = _qtype(rtype)
                self._rrs[n] = [r for r in self._rrs.get(n, []) if r.rtype != qt]

    # ---- failures ----

    def set_servfail(self, name):
        self.servfail_names.add(name)

    def set_hang(self, name):
        self.hang_names.add(name)

    def set_delay(self, name, seconds):
        """Answer name (a pattern, as for hang) seconds late."""
        with self._lock:
            self.delays.append((_Pattern([name]), float(seconds)))

    def _delay_of(self, n):
        with self._lock:
            return max([s for p, s in self.delays if p.match(n)] or [0.0])

    def clear_failures(self):
        self.servfail_names.clear()
        self.hang_names.clear()
        with self._lock:
            self.delays = []

    # ---- counts ----

    def queries(self, name, rtype=None):
        """How many queries for name (of type rtype, or of any type) arrived."""
        n = _norm(name)
        with self._lock:
            if rtype is None:
                return sum(c for (k, _), c in self._counts.items() if k == n)
            return self._counts.get((n, _qtype(rtype)), 0)

    def total_queries(self):
        with self._lock:
            return sum(self._counts.values())

    def reset_counts(self):
        with self._lock:
            self._counts.clear()
            self.log.clear()

    # ---- answering ----

    def _exists(self, n):
        if self._rrs.get(n):
            return True
        suffix = "." + n
        return any(k.endswith(suffix) and v for k, v in self._rrs.items())

    def _soa(self, n):
        labels = n.split(".") if n else []
        apex = ".".join(labels[-2:]) if labels else ""
        soa = SOA(mname="ns." + apex + "." if apex else "ns.",
                  rname="hostmaster." + apex + "." if apex else "hostmaster.",
                  times=(1, 3600, 600, 86400, self.neg_ttl))
        return RR(apex + ".", QTYPE.SOA, CLASS.IN, self.neg_ttl, soa)

    def answer(self, data, transport):
        """The reply packet for request bytes, or None for no reply."""
        try:
            req = DNSRecord.parse(data)
        except Exception:
            return None
        if not req.questions:
            return None
        q = req.questions[0]
        n = _norm(q.qname)
        with self._lock:
            key = (n, int(q.qtype))
            self._counts[key] = self._counts.get(key, 0) + 1
            self.log.append((n, QTYPE.get(q.qtype, str(q.qtype)), transport))
        if self.hang_names.match(n):
            return None
        late = self._delay_of(n)
        if late > 0:
            time.sleep(late)      # this query's own thread
        reply = req.reply()          # QR, RD copied; AA set below
        reply.header.aa = 1
        if self.servfail_names.match(n):
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        with self._lock:
            self._fill(reply, n, int(q.qtype))
        return reply

    def _fill(self, reply, n, qt, depth=0):
        rrs = self._rrs.get(n, [])
        hits = [r for r in rrs if r.rtype == qt or qt == QTYPE.ANY]
        if hits:
            for r in hits:
                reply.add_answer(r)
            return
        cname = [r for r in rrs if r.rtype == QTYPE.CNAME]
        if cname and depth < 8:
            reply.add_answer(cname[0])
            target = _norm(cname[0].rdata.label)
            if self._exists(target) or target in self._rrs:
                self._fill(reply, target, qt, depth + 1)
            return
        if not self._exists(n):
            reply.header.rcode = RCODE.NXDOMAIN
        reply.add_auth(self._soa(n))

    @staticmethod
    def _udp_size(req_data):
        try:
            req = DNSRecord.parse(req_data)
        except Exception:
            return 512
        for rr in req.ar:
            if rr.rtype == QTYPE.OPT:
                return max(512, rr.rclass)
        return 512

    # ---- life ----

    def start(self):
        owner = self

        class UDPHandler(socketserver.BaseRequestHandler):
            def handle(self):
                data, sock = self.request
                reply = owner.answer(data, "udp")
                if reply is None:
                    return
                out = reply.pack()
                if len(out) > owner._udp_size(data):
                    reply.rr, reply.auth, reply.ar = [], [], []
                    reply.header.tc = 1
                    out = reply.pack()
                sock.sendto(out, self.client_address)

        class TCPHandler(socketserver.BaseRequestHandler):
            def handle(self):
                conn = self.request
                conn.settimeout(30)
                try:
                    while True:
                        head = self._read(conn, 2)
                        if head is None:
                            return
                        data = self._read(conn, struct.unpack("!H", head)[0])
                        if data is None:
                            return
                        reply = owner.answer(data, "tcp")
                        if reply is None:
                            continue      # hang: keep the connection, never answer
                        out = reply.pack()
                        conn.sendall(struct.pack("!H", len(out)) + out)
                except OSError:
                    return

            @staticmethod
            def _read(conn, n):
                buf = b""
                while len(buf) < n:
                    chunk = conn.recv(n - len(buf))
                    if not chunk:
                        return None
                    buf += chunk
                return buf

        class UDPServer(socketserver.ThreadingUDPServer):
            daemon_threads = True
            allow_reuse_address = False

        class TCPServer(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        for _ in range(50):
            udp = UDPServer(("127.0.0.1", self._want_port), UDPHandler)
            port = udp.server_address[1]
            try:
                tcp = TCPServer(("127.0.0.1", port), TCPHandler)
            except OSError:
                udp.server_close()
                if self._want_port:
                    raise
                continue
            break
        else:
            raise RuntimeError("dnsserver: no free port for both UDP and TCP")
        self._udp, self._tcp, self.port = udp, tcp, port
        for srv in (udp, tcp):
            t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1},
                                 daemon=True)
            t.start()
            self._threads.append(t)
        return self

    @property
    def addr(self):
        """The upstream as Postern's dns_forward takes it: 127.0.0.1@PORT."""
        return "127.0.0.1@%d" % self.port

    def stop(self):
        for srv in (self._udp, self._tcp):
            if srv is not None:
                srv.shutdown()
                srv.server_close()
        for t in self._threads:
            t.join(5)
        self._udp = self._tcp = None
        self._threads = []

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ---- a client, for the tests' own checks ----

    def ask(self, name, rtype="A", tcp=False, timeout=2.0):
        """Query this server directly; the parsed DNSRecord, or None on timeout."""
        q = DNSRecord.question(name, QTYPE[_qtype(rtype)])
        try:
            data = q.send("127.0.0.1", self.port, tcp=tcp, timeout=timeout)
        except socket.timeout:
            return None
        return DNSRecord.parse(data)


if __name__ == "__main__":
    import sys

    text = open(sys.argv[1]).read() if len(sys.argv) > 1 else ""
    with DNSServer(zone=text) as s:
        print(s.port, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
