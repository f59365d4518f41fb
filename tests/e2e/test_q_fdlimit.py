"""q. Out of file descriptors: with RLIMIT_NOFILE below what the connections
need, posternd stops accepting instead of spinning on accept() (EMFILE): its
CPU time stays small, it writes one "accept paused" line (not one per
wakeup), and when the clients leave it accepts again, serves a new client,
and sums up the outage in one "accept resumed" line. At start it says that
the limit is too low for connections_max."""

import os
import resource
import socket
import time

import pxtest as px

FD_LIMIT = 64           # soft and hard, for posternd only
EXTRA_CLIENTS = 60      # connections beyond what the limit lets it accept
HOLD = 5.0              # seconds the clients stay while posternd is out of fds
CPU_MAX = 1.0           # seconds of posternd CPU time allowed over HOLD
ACCEPT_LINES_MAX = 20   # accept error/pause lines allowed over the whole test


def low_fd_limit():
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


def cpu_seconds(pid):
    """utime + stime of the whole process (all threads), in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is the state (field 3); utime and stime are fields 14 and 15
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def accept_lines(d):
    return d.grep(r" accept (error|paused)")


def test_fd_exhaustion_pauses_accept_and_resumes(sink, make_posternd):
    d = make_posternd("smtp:" + sink.address, preexec_fn=low_fd_limit)
    pid = d.proc.pid
    low = d.wait_log(r"fd-limit low=yes soft=%d hard=%d " % (FD_LIMIT, FD_LIMIT), timeout=5)
    assert low, "no fd-limit warning at start:\n" + d.log()[-2000:]
    assert "connections_max=1000" in low[0], low
    # let the start-up connection (port check) and its session finish
    px.wait_until(lambda: open_fds(pid) < FD_LIMIT - 10, 10, "posternd idle fds")

    n = FD_LIMIT - open_fds(pid) + EXTRA_CLIENTS
    clients = []
    try:
        for _ in range(n):       # the kernel queues what posternd cannot accept
            clients.append(socket.create_connection((px.HOST, d.port), timeout=10))
        px.wait_until(lambda: open_fds(pid) >= FD_LIMIT - 1, 10, "posternd out of fds")
        time.sleep(0.5)          # the sessions it could accept have greeted

        size0, cpu0 = os.path.getsize(d.logfile), cpu_seconds(pid)
        time.sleep(HOLD)
        cpu = cpu_seconds(pid) - cpu0
        grew = os.path.getsize(d.logfile) - size0
        assert d.alive()
        assert cpu < CPU_MAX, "posternd used %.2f s CPU in %.0f s out of fds" % (cpu, HOLD)
        assert grew < 16384, "log grew by %d bytes in %.0f s out of fds" % (grew, HOLD)
        paused = d.grep(r" accept paused ")
        assert len(paused) == 1, paused[:5] or d.log()[-3000:]
        assert 'error="Too many open files"' in paused[0], paused
        assert len(accept_lines(d)) == 1, accept_lines(d)[:5]
    finally:
        for c in clients:
            c.close()

    # the queued connections are accepted (and end at EOF); then a new client is served
    res = px.send_message(d.port, px.make_message(subject="after fd exhaustion"),
                          mail_from="after@client.test")
    assert res["final"].code == 250, res
    px.wait_until(lambda: "after@client.test" in [m.mail_from for m in sink.messages()],
                  px.DELIVERY_WAIT, "the message at the backend")

    resumed = d.wait_log(r" accept resumed ", timeout=15)
    assert len(resumed) == 1, resumed
    kv = px.parse_kv(resumed[0])
    assert int(kv["paused_ms"]) >= HOLD * 1000 * 0.8, resumed
    assert int(kv["retries"]) > 0, resumed
    assert len(accept_lines(d)) < ACCEPT_LINES_MAX, accept_lines(d)[:5]
    assert len(d.grep(r" accept paused ")) == 1, d.grep(r" accept paused ")


def test_soft_fd_limit_raised_at_start(sink, make_posternd):
    """connections_max=100 needs 3*100 + 64 + 1 listener = 365 descriptors:
    a soft limit of 128 under a hard one of 1024 is raised to that."""
    def limits():
        resource.setrlimit(resource.RLIMIT_NOFILE, (128, 1024))
    d = make_posternd("smtp:" + sink.address, overrides=["limits.connections_max=100"],
                      preexec_fn=limits)
    raised = d.wait_log(r"fd-limit raised=yes from=128 to=365$", timeout=5)
    assert raised, d.log()[-2000:]
    assert not d.grep(r"fd-limit low"), d.grep(r"fd-limit")
    with open("/proc/%d/limits" % d.proc.pid) as f:
        row = [l for l in f if l.startswith("Max open files")]
    assert row and row[0].split()[3:5] == ["365", "1024"], row
    res = px.send_message(d.port, px.make_message(), mail_from="raised@client.test")
    assert res["final"].code == 250, res
