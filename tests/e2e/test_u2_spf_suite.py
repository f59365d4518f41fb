"""u2. The RFC 7208 test suite (openspf.org 2014.04, 203 tests, from
Debian's python3-spf) through the SPF plugin (issue 9): spfsuite.py serves
each scenario's zone data from the test DNS server and runs `postern
test` for each test. It prints "N passed, N failed"; every failure must be
a deviation listed, with its reason, in doc/spf-deviations.md, and a
listed deviation that passes now is reported so the list can shrink."""

import os

import pytest

import pxtest as px
import spfsuite

pytestmark = pytest.mark.skipif(not spfsuite.spf_configured(),
                                reason="configured --without-spf: no SPF plugin")

DEVIATIONS = os.path.join(px.top_srcdir(), "doc", "spf-deviations.md")
SUITE_SIZE = 203


def test_rfc7208_suite(plugin, postern_bin, tmp_path, capsys):
    spfsuite.load_suite()                  # fails clearly without python3-spf
    plugin("spf")
    lines = []
    passed, failed = spfsuite.run_suite(postern_bin, tmp_path, log=lines.append)
    documented = spfsuite.documented_deviations(DEVIATIONS)
    with capsys.disabled():
        print("\nRFC 7208 suite through the SPF plugin: %s" % lines[-1])
    assert len(passed) + len(failed) == SUITE_SIZE, lines[-1]
    undocumented = sorted(set(failed) - documented)
    assert not undocumented, "deviations not in doc/spf-deviations.md:\n" + "\n".join(
        "%s: %s" % (n, failed[n]) for n in undocumented)
    fixed = sorted(documented & set(passed))
    if fixed:
        print("listed in doc/spf-deviations.md but passing now: %s" % ", ".join(fixed))
    assert len(passed) >= SUITE_SIZE - len(documented), lines[-1]
