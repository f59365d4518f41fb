"""x3. Two posternd nodes sharing one redis-server started by the test
(issue 10, must-show 2 and 3): greylisted on node A, retried and accepted on
node B; a rate limit reached across both; the same through HAProxy sending
PROXY v2 to both; Redis killed mid-test: the configured on_error happens
(tempfail 451 4.3.0 for greylist, accept for ratelimit), nothing crashes,
and service resumes when Redis is back on its port."""

import os
import time

import pytest

import pxtest as px
import storetest as st


@pytest.fixture
def redis(tmp_path_factory):
    r = st.RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield r
    finally:
        r.stop()


def two_nodes(make_posternd, backend, plugin, store, **gl):
    sections = [st.ratelimit(plugin, recipients=3, recipients_window="1h"),
                st.greylist(plugin, delay="2s", **gl)]
    return [st.start_node(make_posternd, backend, sections, store=store) for _ in range(2)]


def test_greylist_and_limit_across_nodes(sink, make_posternd, plugin, redis):
    a, b = two_nodes(make_posternd, "smtp:" + sink.address, plugin, redis.url)
    sender = "cluster-%s@client.test" % os.path.basename(a.workdir)
    t0 = time.monotonic()
    r, _ = st.attempt(a.port, sender, src="192.0.2.50")
    assert r.code == 451 and r.lines[0].startswith("4.7.1"), r
    r, _ = st.attempt(b.port, sender, src="192.0.2.50")      # early, on the other node
    assert r.code == 451, r
    time.sleep(max(0.0, t0 + 2.2 - time.monotonic()))
    r, eod = st.attempt(b.port, sender, src="192.0.2.50")
    assert r.code == 250 and eod.code == 250, (r, eod)
    assert len(sink.wait_for(1, mail_from=sender)) == 1
    assert a.grep(r"plugin=greylist greylisted=yes")
    assert b.grep(r"plugin=greylist greylisted=passed")
    assert redis.cli("EXISTS", "greylist:c:192.0.2.0/24").strip() == "1"
    # 3 recipients per client, counted in Redis: 2 on A, 1 on B, the 4th refused on A
    for node, rcpt in ((a, "r1"), (a, "r2"), (b, "r3")):
        r, _ = st.attempt(node.port, "s@client.test", rcpt=rcpt + "@example.test",
                          src="192.0.2.60", send_data=False)
        assert r.code in (250, 451) and "Too many" not in r.text, r
    r, _ = st.attempt(a.port, "s@client.test", rcpt="r4@example.test", src="192.0.2.60",
                      send_data=False)
    assert r.code == 451 and "Too many recipients from 192.0.2.60/32" in r.lines[0], r
    assert 0 < int(redis.cli("PTTL", "ratelimit:rcpt:192.0.2.60/32")) <= 3600 * 1000


def test_through_haproxy(sink, make_posternd, plugin, redis, workdir):
    a, b = two_nodes(make_posternd, "smtp:" + sink.address, plugin, redis.url)
    ha = st.Haproxy2(workdir / "haproxy", [a.port, b.port]).start()
    try:
        sender = "ha-%s@client.test" % os.path.basename(a.workdir)
        t0 = time.monotonic()
        r, _ = st.attempt_via(ha.port, sender)
        assert r.code == 451, r
        time.sleep(max(0.0, t0 + 2.2 - time.monotonic()))
        got = []
        for _ in range(2):           # round robin: the two retries reach both nodes
            got.append(st.attempt_via(ha.port, sender))
        assert all(r.code == 250 and eod.code == 250 for r, eod in got), got
        for d in (a, b):
            assert d.grep(r"proxy version=2 client=127\.0\.0\.5 "), d.logfile
        # the rate limit holds across the nodes behind the balancer
        rs = [st.attempt_via(ha.port, "s@client.test", rcpt="x%d@example.test" % i,
                             source="127.0.0.6")[0] for i in range(4)]
        assert all(r.code == 451 and "Greylisted" in r.text for r in rs[:3]), rs
        assert rs[3].code == 451 and "Too many recipients" in rs[3].text, rs[3]
        assert redis.cli("GET", "ratelimit:rcpt:127.0.0.6/32").strip() == "4"
        assert any(d.grep(r"exceeded=recipients who=127\.0\.0\.6/32") for d in (a, b))
    finally:
        ha.stop()


def test_redis_killed_and_back(sink, make_posternd, plugin, redis):
    sections = [st.ratelimit(plugin, recipients=1000, recipients_window="1h",
                             on_error="accept"),
                st.greylist(plugin, delay="1s")]
    d = st.start_node(make_posternd, "smtp:" + sink.address, sections, store=redis.url,
                      timeouts={"store": "1s"})
    t0 = time.monotonic()
    assert st.attempt(d.port, "k@client.test", send_data=False)[0].code == 451
    time.sleep(max(0.0, t0 + 1.2 - time.monotonic()))
    assert st.attempt(d.port, "k@client.test")[1].code == 250
    redis.kill()
    for _ in range(3):
        r, _ = st.attempt(d.port, "k@client.test", send_data=False)
        assert r.code == 451 and r.lines[0].startswith("4.3.0"), r   # greylist: tempfail
    assert d.wait_log(r"plugin name=greylist stage=rcpt error=store action=tempfail")
    assert d.wait_log(r"plugin name=ratelimit stage=rcpt error=store action=accept")
    assert d.wait_log(r"store engine=redis error=")
    assert d.alive()
    redis.start()                                   # the same port, empty
    px.wait_until(lambda: st.attempt(d.port, "k@client.test", send_data=False)[0]
                  .lines[0].startswith("4.7.1"), 15,
                  "greylisting working again after Redis came back")
    assert redis.cli("EXISTS", "greylist:t:192.0.2.0/24/k@client.test/user@example.test") \
        .strip() == "1"
    assert redis.cli("EXISTS", "ratelimit:rcpt:192.0.2.10/32").strip() == "1"
    assert d.alive()


def test_bad_store_spec(tmp_path, posternd_bin):
    conf = tmp_path / "postern.conf"
    conf.write_text('listen = {"127.0.0.1:1"}\nstore = "redis://:pw@"\n'
                    'spool_dir = "%s"\n' % tmp_path)
    r = px.run_check(posternd_bin, str(conf))
    assert r.returncode != 0 and "store" in r.stderr, r.stderr
