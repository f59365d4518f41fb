"""clamtest: test material for the clamav plugin, built at run time.

No freshclam, no network: the signature database is made here with
`sigtool` (Debian package clamav) from EICAR (a body signature, .ndb) and
from Debian's clamav-testfiles (the MD5 of clam.exe, .hdb), as
../shared/docs/testing.md describes. The messages carry EICAR as the body,
as a base64 attachment and inside a zip attachment; the clamav-testfiles
mail samples are used as they ship (the mbox "From " line dropped, CRLF).
clamd (Debian package clamav-daemon) is started on a private config and
socket under the test's directory, with the same database.
"""

import base64
import io
import os
import re
import shutil
import subprocess
import time
import zipfile

import pxtest as px

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
EICAR_NAME = "Test.EICAR.UNOFFICIAL"
CLAMEXE_NAME = "Test.ClamExe.UNOFFICIAL"
TESTFILES = "/usr/share/clamav-testfiles"
# The mail samples of clamav-testfiles: a MIME mail with clam.exe in base64,
# and clam.exe alone, base64- and uu-encoded, in mbox form
MAIL_SAMPLES = ("clam.mail", "clam.exe.mbox.base64", "clam.exe.mbox.uu")
# archives and documents of clamav-testfiles that carry clam.exe, attached
ARCHIVE_SAMPLES = ("clam.zip", "clam.7z", "clam.tar.gz", "clam.cab", "clam.arj",
                   "clam.exe.bz2", "clam.impl.zip")


def sigtool():
    return px.require("sigtool")


def hex_of(text):
    """sigtool --hex-dump of bytes: the hex an .ndb body signature takes."""
    out = subprocess.run([sigtool(), "--hex-dump"], input=text, capture_output=True,
                         timeout=30, check=True).stdout
    return out.decode().strip()


def md5_line(path, name):
    """sigtool --md5 FILE, renamed: HASH:SIZE:NAME (an .hdb line)."""
    out = subprocess.run([sigtool(), "--md5", path], capture_output=True, timeout=30,
                         check=True).stdout.decode().strip()
    h, size, _ = out.split(":", 2)
    return "%s:%s:%s" % (h, size, name)


def build_db(d, extra_ndb=()):
    """A database directory under d: test.ndb (EICAR anywhere in the
    stream, plus extra_ndb lines) and test.hdb (clam.exe). Returns d."""
    os.makedirs(d, exist_ok=True)
    ndb = ["Test.EICAR:0:*:%s" % hex_of(b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE")]
    ndb += list(extra_ndb)
    write_atomic(os.path.join(d, "test.ndb"), "\n".join(ndb) + "\n")
    write_atomic(os.path.join(d, "test.hdb"),
                 md5_line(os.path.join(TESTFILES, "clam.exe"), "Test.ClamExe") + "\n")
    return d


def marker_ndb(name, marker):
    """An .ndb line that finds marker (bytes) anywhere: the "new signature"
    of the reload tests."""
    return "%s:0:*:%s" % (name, hex_of(marker))


def write_atomic(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.rename(path + ".tmp", path)


# ------------------------------------------------------------- messages ---

def headers(subject, extra=()):
    h = ["From: Sender <sender@client.test>", "To: Rcpt <user@example.test>",
         "Subject: " + subject, "Message-ID: <%d.%d@clamtest.test>" % (os.getpid(),
                                                                      time.monotonic_ns()),
         "Date: Sun, 01 Jan 2023 00:00:00 +0000"] + list(extra)
    return ("\r\n".join(h) + "\r\n").encode()


def b64(data):
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


def multipart(subject, parts):
    """parts: (content-type, filename or None, bytes) attached in base64."""
    out = headers(subject, ["MIME-Version: 1.0",
                            'Content-Type: multipart/mixed; boundary="XYZ"']) + b"\r\n"
    out += b"--XYZ\r\nContent-Type: text/plain\r\n\r\nSee the attachment.\r\n"
    for ctype, fname, data in parts:
        out += b"--XYZ\r\nContent-Type: " + ctype.encode()
        if fname:
            out += b'; name="' + fname.encode() + b'"\r\nContent-Disposition: attachment; ' \
                   b'filename="' + fname.encode() + b'"'
        out += b"\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64(data)
    return out + b"--XYZ--\r\n"


def zip_of(files):
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files:
            z.writestr(name, data)
    return b.getvalue()


def eicar_body():
    return headers("eicar as the body") + b"\r\n" + EICAR + b"\r\n"


def eicar_base64():
    return multipart("eicar attached", [("application/octet-stream", "eicar.com", EICAR)])


def eicar_zip():
    return multipart("eicar zipped", [("application/zip", "eicar.zip",
                                       zip_of([("eicar.com", EICAR)]))])


def clean(subject="clean", body=b"Nothing to see here.\r\n"):
    return headers(subject) + b"\r\n" + body


def clean_zip(nfiles, nest=0):
    data = zip_of([("f%d.txt" % i, b"hello %d\n" % i * 50) for i in range(nfiles)])
    for _ in range(nest):
        data = zip_of([("inner.zip", data)])
    return multipart("zip of %d, nested %d" % (nfiles, nest),
                     [("application/zip", "files.zip", data)])


def big(nbytes):
    """A clean message with about nbytes of base64 attachments (random)."""
    parts = []
    chunk = 256 * 1024
    for _ in range(max(1, nbytes * 3 // 4 // chunk)):
        parts.append(("application/octet-stream", None, os.urandom(chunk)))
    return multipart("big", parts)


def sample(name):
    """A clamav-testfiles mail sample as a CRLF message (mbox From_ dropped)."""
    with open(os.path.join(TESTFILES, name), "rb") as f:
        data = f.read()
    if data.startswith(b"From "):
        data = data.split(b"\n", 1)[1]
    return px.to_crlf(data)


def attached_sample(name):
    with open(os.path.join(TESTFILES, name), "rb") as f:
        return multipart("sample " + name, [("application/octet-stream", name, f.read())])


# ---------------------------------------------------------------- clamd ---

class Clamd:
    """clamd in the foreground on a private config, a unix socket (and a
    loopback TCP port) under workdir, the given database; as the user
    running the test (no User line: clamd keeps its uid)."""

    def __init__(self, workdir, database, tcp=True):
        self.dir = os.path.abspath(str(workdir))
        self.database = database
        self.socket = os.path.join(self.dir, "clamd.sock")
        self.port = px.free_port() if tcp else None
        self.conf = os.path.join(self.dir, "clamd.conf")
        self.logfile = os.path.join(self.dir, "clamd.log")
        self.proc = None

    def write_config(self):
        os.makedirs(os.path.join(self.dir, "tmp"), exist_ok=True)
        px.make_traversable(self.dir)   # posternd reaches the socket as its own user
        lines = ["Foreground yes", "LocalSocket %s" % self.socket, "LocalSocketMode 666",
                 "DatabaseDirectory %s" % self.database,
                 "TemporaryDirectory %s" % os.path.join(self.dir, "tmp"),
                 "LogFile %s" % self.logfile, "LogTime yes", "LogVerbose yes",
                 "PidFile %s" % os.path.join(self.dir, "clamd.pid"),
                 "AlertExceedsMax yes", "StreamMaxLength 1M", "MaxThreads 4",
                 "SelfCheck 0", "ReadTimeout 30", "CommandReadTimeout 30"]
        if self.port:
            lines += ["TCPSocket %d" % self.port, "TCPAddr 127.0.0.1"]
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")

    def start(self):
        binary = px.require("clamd")
        self.write_config()
        self.out = open(os.path.join(self.dir, "clamd.out"), "ab")
        self.proc = subprocess.Popen([binary, "-c", self.conf], stdin=subprocess.DEVNULL,
                                     stdout=self.out, stderr=self.out, cwd=self.dir,
                                     start_new_session=True)
        px.wait_until(lambda: os.path.exists(self.socket) and self.ping(), px.START_WAIT,
                      "clamd on %s" % self.socket, self.proc)
        return self

    def ping(self):
        import socket
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(2)
                s.connect(self.socket)
                s.sendall(b"zPING\0")
                return s.recv(64).startswith(b"PONG")
        except OSError:
            return False

    def stop(self):
        px.stop_pid(self.proc)
        if getattr(self, "out", None):
            self.out.close()

    def log(self):
        out = ""
        for p in (self.logfile, os.path.join(self.dir, "clamd.out")):
            try:
                with open(p, errors="replace") as f:
                    out += f.read()
            except OSError:
                pass
        return out


def reply_names_signature(reply, name):
    return (reply is not None and reply.code == 554 and reply.lines
            and reply.lines[0].startswith("5.7.0") and name in reply.text)


def have(prog):
    return px.which(prog) is not None


def testfiles_present():
    return os.path.isdir(TESTFILES) and os.path.isfile(os.path.join(TESTFILES, "clam.exe"))


