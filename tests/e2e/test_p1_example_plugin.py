"""p1. The example plugin, built OUT OF TREE from what `make install` puts in
place (postern/plugin.h and postern-plugin.pc) and nothing else, loads from
conf.d and its verdicts reach an SMTP client through posternd (issue 4,
must-show 1)."""

import os
import re
import shutil
import subprocess

import pytest

import pxtest as px

INSTALL_TIMEOUT = 300
CC_TIMEOUT = 120


def clean_env():
    """The environment without the parent make's job server and flags (the
    suite runs under `make check`)."""
    env = dict(os.environ)
    for k in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "GNUMAKEFLAGS"):
        env.pop(k, None)
    return env


def find_under(root, tail):
    """Files under root whose path ends with tail (e.g. 'postern/plugin.h')."""
    out = []
    for d, _dirs, names in os.walk(root):
        for n in names:
            p = os.path.join(d, n)
            if p.endswith(os.sep + tail):
                out.append(p)
    return sorted(out)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """`make install DESTDIR=...` of the build tree: (destdir, .pc path,
    header path)."""
    top = px.top_builddir()
    dest = str(tmp_path_factory.mktemp("destdir"))
    r = subprocess.run(["make", "-C", top, "install", "DESTDIR=" + dest],
                       capture_output=True, text=True, timeout=INSTALL_TIMEOUT,
                       env=clean_env(), stdin=subprocess.DEVNULL)
    assert r.returncode == 0, "make install failed (%d):\n%s\n%s" % (
        r.returncode, r.stdout[-3000:], r.stderr[-3000:])
    pcs = find_under(dest, "pkgconfig/postern-plugin.pc")
    headers = find_under(dest, "postern/plugin.h")
    assert len(pcs) == 1, "postern-plugin.pc not installed exactly once: %r" % pcs
    assert len(headers) == 1, "postern/plugin.h not installed exactly once: %r" % headers
    return dest, pcs[0], headers[0]


def pkg_config(installed, *args):
    dest, pc, _ = installed
    env = clean_env()
    env["PKG_CONFIG_PATH"] = os.path.dirname(pc)
    env["PKG_CONFIG_LIBDIR"] = os.path.dirname(pc)     # nothing from the system
    env["PKG_CONFIG_SYSROOT_DIR"] = dest
    r = subprocess.run(["pkg-config"] + list(args) + ["postern-plugin"], capture_output=True,
                       text=True, timeout=30, env=env)
    assert r.returncode == 0, "pkg-config %s failed: %s" % (" ".join(args), r.stderr)
    return r.stdout.strip()


@pytest.fixture(scope="module")
def example_so(installed, tmp_path_factory):
    """example.c copied alone to an empty folder and built there with the
    documented command line: cc -shared -fPIC $(pkg-config --cflags
    postern-plugin) -o example.so example.c"""
    d = tmp_path_factory.mktemp("third-party")
    px.make_traversable(str(d))
    src = os.path.join(str(d), "example.c")
    shutil.copyfile(os.path.join(px.top_srcdir(), "plugins", "example", "example.c"), src)
    cflags = pkg_config(installed, "--cflags").split()
    assert cflags, "pkg-config --cflags postern-plugin gave nothing"
    for f in cflags:
        if f.startswith("-I"):
            assert f[2:].startswith(installed[0]), "include path outside DESTDIR: %s" % f
    so = os.path.join(str(d), "example.so")
    argv = ["cc", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror"] + cflags + [
        "-o", so, src]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=CC_TIMEOUT, cwd=str(d),
                       env=clean_env())
    assert r.returncode == 0, "%s\nfailed:\n%s" % (" ".join(argv), r.stderr)
    os.chmod(so, 0o755)
    return so


def test_installed_header_is_the_public_one(installed):
    _, _, header = installed
    with open(header, "rb") as f, \
            open(os.path.join(px.top_srcdir(), "include", "postern", "plugin.h"), "rb") as g:
        assert f.read() == g.read(), "installed postern/plugin.h differs from the source"


def test_pc_file_variables(installed):
    dest = installed[0]
    plugindir = pkg_config(installed, "--variable=plugindir")
    assert plugindir.startswith(dest + "/"), "plugindir %r not under DESTDIR" % plugindir
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", pkg_config(installed, "--modversion"))
    assert pkg_config(installed, "--libs") == "", "a plugin needs no library of Postern's"


def test_out_of_tree_build_exports_px_plugin(example_so):
    r = subprocess.run(["nm", "-D", "--defined-only", example_so], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert re.search(r"\bpx_plugin$", r.stdout, re.M), r.stdout


def example_conf_d(so, **options):
    """conf.d/50-example.conf: plugin_dir points at the out-of-tree build;
    no path, so the host looks for plugin_dir/example.so."""
    return ('# the example plugin, built out of tree\n'
            'plugin_dir = "%s"\n' % os.path.dirname(so)) + px.plugin_section("example", **options)


def test_loads_from_conf_d_and_verdicts_reach_the_client(example_so, sink, make_posternd):
    d = px.posternd_with_conf_d(
        make_posternd, "smtp:" + sink.address,
        {"50-example.conf": example_conf_d(example_so,
                                           reject_senders=["spammer@bad.test", "@worse.test"],
                                           max_size="20k")})
    # name, version and ABI of the plugin are logged at start
    loaded = [l for l in d.lines() if "example" in l and "1.0" in l and re.search(r"plugin", l)]
    assert loaded, "no log line names the loaded plugin, its version and ABI"

    # MAIL rule
    with px.SmtpClient(d.port) as c:
        c.greeting()
        c.ehlo()
        r1 = c.cmd("MAIL FROM:<spammer@bad.test>")
        r2 = c.cmd("MAIL FROM:<anyone@WORSE.test>")
        r3 = c.cmd("MAIL FROM:<fine@client.test>")
        c.quit()
    assert r1.first == "550 5.7.1 Sender refused by the example plugin", r1
    assert r2.first == "550 5.7.1 Sender refused by the example plugin", r2
    assert r3.code == 250, r3

    # header rule, size rule, and a message that passes
    bad = px.make_message(extra_headers=["X-Postern-Test:  Reject "])
    res = px.send_message(d.port, bad, mail_from="hdr@client.test")
    assert res["final"].first == "550 5.7.1 Message refused by the example plugin", res
    big = px.make_message(body=(b"y" * 70 + b"\r\n") * 400)
    res = px.send_message(d.port, big, mail_from="big@client.test")
    assert res["final"].first == "552 5.3.4 Message too big for the example plugin", res
    good = px.make_message(extra_headers=["X-Postern-Test: keep"])
    res = px.send_message(d.port, good, mail_from="good@client.test")
    assert res["final"].code == 250, res

    got = sink.wait_for(1, mail_from="good@client.test")
    assert len(got) == 1
    assert got[0].header("X-Postern-Example") == ["checked"], got[0].content[:600]
    assert sink.find(mail_from="hdr@client.test") == []
    assert sink.find(mail_from="big@client.test") == []
    assert sink.find(mail_from="spammer@bad.test") == []

    lines = d.wait_log(r" plugin name=example stage=data-end verdict=reject ms=\d+", n=2)
    assert len(lines) >= 2, "no 'plugin name=example stage=data-end verdict=reject' lines"
    assert d.grep(r" plugin name=example stage=mail verdict=reject ms=\d+")
    assert d.grep(r" plugin name=example stage=data-end verdict=next ms=\d+")


def test_header_and_value_options_from_command_line(example_so, sink, make_posternd):
    """-o PLUGIN.OPTION=value sets a plugin option (over conf.d)."""
    d = px.posternd_with_conf_d(
        make_posternd, "smtp:" + sink.address,
        {"50-example.conf": example_conf_d(example_so, header="X-Spam-Flag", header_value="NO")},
        overrides=["example.header_value=YES", "example.add_header=no"])
    res = px.send_message(d.port, px.make_message(extra_headers=["X-Spam-Flag: YES"]),
                          mail_from="flag@client.test")
    assert res["final"].first == "550 5.7.1 Message refused by the example plugin", res
    res = px.send_message(d.port, px.make_message(extra_headers=["X-Spam-Flag: NO"]),
                          mail_from="noflag@client.test")
    assert res["final"].code == 250, res
    got = sink.wait_for(1, mail_from="noflag@client.test")
    assert len(got) == 1 and got[0].header("X-Postern-Example") == [], got


def test_configuration_checks_pass(example_so, posternd_bin, make_posternd, workdir):
    d = make_posternd("smtp:127.0.0.1:25", start=False)
    px.write_conf_d(d, "50-example.conf", example_conf_d(example_so))
    d.write_config()
    r = px.run_check(posternd_bin, d.conf)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)


def test_postern_check_shows_plugin_options(example_so, postern_bin, make_posternd):
    d = make_posternd("smtp:127.0.0.1:25", start=False)
    px.write_conf_d(d, "50-example.conf",
                    example_conf_d(example_so, reject_senders=["@worse.test"]))
    d.write_config()
    r = px.run_postern_check(postern_bin, d.conf)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    assert "example" in r.stdout and "@worse.test" in r.stdout, r.stdout
