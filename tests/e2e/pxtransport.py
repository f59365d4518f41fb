"""pxtransport: peers and helpers for the transport tests (test_t*_*.py).

Real peers only: certificates made with `openssl req` at run time, TLS
clients from Python's ssl module (OpenSSL), swaks, openssl s_client,
HAProxy (Debian `haproxy`) sending PROXY v2, and aiosmtpd as a backend that
owns accounts for SMTP AUTH. Everything on 127.0.0.x, ports picked at run
time, state under the caller's tmp dir, processes stopped by PID.
"""

import os
import socket
import ssl
import struct
import subprocess
import threading

import pxtest as px


# ----------------------------------------------------------- certificates --

def make_cert(directory, cn, sans=()):
    """A self-signed RSA certificate and key for cn (+ DNS SANs); returns
    (cert_path, key_path)."""
    directory = str(directory)
    os.makedirs(directory, exist_ok=True)
    cert = os.path.join(directory, cn + ".crt")
    key = os.path.join(directory, cn + ".key")
    names = ",".join("DNS:" + n for n in (cn,) + tuple(sans))
    subprocess.run([px.require("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                    "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=" + cn,
                    "-addext", "subjectAltName=" + names],
                   check=True, capture_output=True, timeout=60)
    os.chmod(key, 0o644)
    return cert, key


def client_context():
    """A client TLS context that does not verify (the tests use self-signed
    certificates) but speaks only TLS 1.2+."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


# ------------------------------------------------------------ SMTP client --

class Client(px.SmtpClient):
    """px.SmtpClient that can bind a source address, start TLS, or connect
    with implicit TLS."""

    def __init__(self, port, host=px.HOST, source=None, implicit_tls=False,
                 server_name="mx.test", timeout=px.IO_TIMEOUT):
        self.buf = b""
        self.transcript = []
        self.closed = False
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(timeout)
        if source:
            s.bind((source, 0))
        s.connect((host, port))
        if implicit_tls:
            s = client_context().wrap_socket(s, server_hostname=server_name)
        self.sock = s

    def starttls(self, server_name="mx.test"):
        """STARTTLS; on 220 the socket is wrapped. Returns the 220 reply."""
        r = self.cmd("STARTTLS")
        if r.code == 220:
            assert self.buf == b"", "bytes after the STARTTLS reply: %r" % self.buf
            self.sock = client_context().wrap_socket(self.sock, server_hostname=server_name)
        return r

    def tls_version(self):
        return self.sock.version() if isinstance(self.sock, ssl.SSLSocket) else None


def connect_from(source, port, host=px.HOST, timeout=px.IO_TIMEOUT):
    """A plain socket from a chosen local address (127.0.0.2 ...)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((source, 0))
    s.connect((host, port))
    return s


def read_reply_line(sock, limit=4096):
    """The first reply line a raw socket gets (bounded), b"" at EOF."""
    buf = b""
    for _ in range(limit):
        try:
            c = sock.recv(1)
        except (ConnectionResetError, socket.timeout):
            return buf
        if not c:
            return buf
        buf += c
        if buf.endswith(b"\n"):
            return buf
    return buf


# --------------------------------------------------------- PROXY protocol --

def proxy_v1(src, dst, sport, dport):
    fam = "TCP6" if ":" in src else "TCP4"
    return ("PROXY %s %s %s %d %d\r\n" % (fam, src, dst, sport, dport)).encode()


V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def proxy_v2(src, dst, sport, dport):
    body = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    return V2_SIG + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body


# ---------------------------------------------------------------- HAProxy --

class Haproxy:
    """HAProxy in TCP mode in front of one server, sending PROXY v2
    (or v1 with version=1)."""

    def __init__(self, workdir, server_port, version=2):
        self.workdir = str(workdir)
        self.port = px.free_port()
        self.server_port = server_port
        self.version = version
        self.conf = os.path.join(self.workdir, "haproxy.cfg")
        self.logfile = os.path.join(self.workdir, "haproxy.log")
        self.proc = None

    def start(self):
        os.makedirs(self.workdir, exist_ok=True)
        send = "send-proxy-v2" if self.version == 2 else "send-proxy"
        with open(self.conf, "w") as f:
            f.write("global\n    maxconn 100\n"
                    "defaults\n    mode tcp\n    timeout connect 10s\n"
                    "    timeout client 60s\n    timeout server 60s\n"
                    "frontend smtp\n    bind %s:%d\n    default_backend postern\n"
                    "backend postern\n    server p1 %s:%d %s\n"
                    % (px.HOST, self.port, px.HOST, self.server_port, send))
        self._log = open(self.logfile, "ab")
        self.proc = subprocess.Popen([px.require("haproxy"), "-db", "-f", self.conf],
                                     stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        px.wait_until(lambda: px.port_accepts(self.port), px.START_WAIT,
                      "haproxy on port %d" % self.port, self.proc)
        return self

    def stop(self):
        px.stop_pid(self.proc)
        if getattr(self, "_log", None):
            self._log.close()


# ------------------------------------------------ aiosmtpd with accounts ---

class AuthBackend:
    """aiosmtpd on its own thread: a real SMTP server that owns accounts
    (AUTH PLAIN/LOGIN checked against `accounts`) and records messages."""

    def __init__(self, accounts):
        self.accounts = dict(accounts)
        self.port = px.free_port()
        self.attempts = []
        self.messages = []
        self.controller = None

    def start(self):
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult
        outer = self

        def authenticator(server, session, envelope, mechanism, auth_data):
            user = auth_data.login.decode() if isinstance(auth_data.login, bytes) \
                else auth_data.login
            pw = auth_data.password.decode() if isinstance(auth_data.password, bytes) \
                else auth_data.password
            ok = outer.accounts.get(user) == pw
            outer.attempts.append((mechanism, user, ok))
            return AuthResult(success=ok, handled=False)

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                outer.messages.append(envelope)
                return "250 2.0.0 Ok"

        self.controller = Controller(Handler(), hostname=px.HOST, port=self.port,
                                     authenticator=authenticator, auth_require_tls=False,
                                     ready_timeout=px.START_WAIT)
        self.controller.start()
        return self

    @property
    def address(self):
        return "%s:%d" % (px.HOST, self.port)

    def stop(self):
        if self.controller is not None:
            self.controller.stop()


def swaks(*args, timeout=120):
    """Run swaks; returns CompletedProcess (text)."""
    return subprocess.run([px.require("swaks")] + list(args), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def run_threads(fn, n):
    """Run fn(i) in n threads (bounded join); returns the results in order."""
    out = [None] * n

    def one(i):
        try:
            out[i] = fn(i)
        except Exception as e:      # noqa: BLE001 - reported in the result
            out[i] = e
    ts = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=px.IO_TIMEOUT)
    return out


class TlsPostfix(px.PostfixInstance):
    """A private Postfix whose master.cf also runs tlsmgr (its smtpd needs it
    for STARTTLS)."""

    def write_config(self):
        super().write_config()
        with open(os.path.join(self.confdir, "master.cf"), "a") as f:
            f.write("tlsmgr    unix  -       -       n       1000?   1       tlsmgr\n")
