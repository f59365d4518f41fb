"""z4. bench/milter runs, bounded, and shows no fixed stall per message
(issue 12, must-show 5): at one session, postern-milter's median time from
MAIL to the final 250 stays within 20 ms of Postfix alone (a Nagle/delayed-ACK
stall would add ~40 ms to every message; see proxy/milter_session.c,
wanted_steps)."""

import json
import os
import subprocess

import pxtest as px


def test_5_bench_quick_no_fixed_stall(tmp_path):
    out = str(tmp_path / "bench.json")
    bench = os.path.join(px.top_srcdir(), "bench", "milter")
    r = subprocess.run(["/usr/bin/python3", bench, "--quick", "--conc", "1", "--messages", "40",
                        "--deadline", "240", "--json", out], capture_output=True, text=True,
                       timeout=300, cwd=px.top_builddir())
    assert r.returncode == 0, r.stdout + r.stderr
    cells = {c["path"]: c for c in json.load(open(out))}
    assert "postern/opendkim" in r.stdout and "msg/s" in r.stdout, r.stdout
    assert cells["postern"]["latency_ms"] < cells["plain"]["latency_ms"] + 20, r.stdout
