"""x2. Rate limits on the embedded store (issue 10, must-show 6): the N+1st
connection gets 421 4.7.0 and is closed, the N+1st message (MAIL) and the
N+1st recipient 451 4.7.1, per client address; the per-sender-domain limit
counts across client addresses; another client is not affected; the window
resets (windows of 2 s here, set in the configuration)."""

import time

import pxtransport as pt
import storetest as st

WINDOW = 2.0


def connect(port, src):
    c = pt.Client(port)
    c.send(pt.proxy_v2(src, "198.51.100.1", 40000, 25))
    return c, c.greeting()


def test_connections(sink, make_posternd, plugin):
    d = st.start_node(make_posternd, "smtp:" + sink.address,
                      [st.ratelimit(plugin, connections=3, connections_window="2s")])
    t0 = time.monotonic()
    for i in range(3):
        c, g = connect(d.port, "192.0.2.20")
        assert g.code == 220, (i, g)
        c.quit()
    c, g = connect(d.port, "192.0.2.20")
    assert g.code == 421 and "Too many connections from 192.0.2.20/32" in g.lines[0], g
    assert c.at_eof()
    c.close()
    c, g = connect(d.port, "192.0.2.21")          # another client: its own count
    assert g.code == 220, g
    c.quit()
    assert d.wait_log(r"plugin=ratelimit exceeded=connections who=192\.0\.2\.20/32 ")
    time.sleep(max(0.0, t0 + WINDOW + 0.3 - time.monotonic()))
    c, g = connect(d.port, "192.0.2.20")          # a new window
    assert g.code == 220, g
    c.quit()


def test_messages_and_recipients(sink, make_posternd, plugin):
    d = st.start_node(make_posternd, "smtp:" + sink.address,
                      [st.ratelimit(plugin, messages=2, messages_window="1h",
                                    recipients=3, recipients_window="1h")])
    a = st.Attempt(d.port, "192.0.2.30")
    m, rs = a.envelope("a@client.test", ["r1@example.test", "r2@example.test"])
    assert m.code == 250 and [r.code for r in rs] == [250, 250]
    assert a.data().code == 250
    m, rs = a.envelope("a@client.test", ["r3@example.test", "r4@example.test"])
    assert m.code == 250, m
    assert [r.code for r in rs] == [250, 451], rs            # the 4th recipient
    assert rs[1].lines[0].startswith("4.7.1 Too many recipients from 192.0.2.30/32"), rs[1]
    assert a.data().code == 250
    m, _ = a.envelope("a@client.test", [])                   # the 3rd message
    assert m.code == 451 and m.lines[0].startswith("4.7.1 Too many messages"), m
    a.close()
    b = st.Attempt(d.port, "192.0.2.31")
    m, rs = b.envelope("a@client.test", ["r1@example.test"])
    assert m.code == 250 and rs[0].code == 250
    b.close()


def test_sender_domain(sink, make_posternd, plugin):
    d = st.start_node(make_posternd, "smtp:" + sink.address,
                      [st.ratelimit(plugin, domain_messages=2, domain_window="2s")])
    t0 = time.monotonic()
    for i, src in enumerate(("192.0.2.40", "198.51.100.40")):
        a = st.Attempt(d.port, src)
        m, _ = a.envelope("u%d@bulk.test" % i, [])
        assert m.code == 250, m
        a.close()
    a = st.Attempt(d.port, "203.0.113.40")
    m, _ = a.envelope("u9@bulk.test", [])
    assert m.code == 451 and "Too many messages from bulk.test" in m.lines[0], m
    m, _ = a.envelope("u9@other.test", [])                   # another domain
    assert m.code == 250, m
    a.close()
    time.sleep(max(0.0, t0 + WINDOW + 0.3 - time.monotonic()))
    a = st.Attempt(d.port, "203.0.113.40")
    assert a.envelope("u9@bulk.test", [])[0].code == 250
    a.close()
