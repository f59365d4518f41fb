-- t-budget: the sleeper plugin (RCPT, 5 s) has a budget of 1 s here: the
-- RCPT gets its on_error (451 4.3.0) after about a second, never a hung
-- callback; the next transaction on the connection goes on.
dofile(dir .. "/common.lua")
conn = open()
check(mt.conninfo(conn, "unknown", "192.0.2.10") == nil, "conninfo")
check(mt.helo(conn, "mail.good.example") == nil, "helo")
check(mt.mailfrom(conn, "<alice@good.example>") == nil, "mail")
t0 = os.time()
check(mt.rcptto(conn, "<slow@slow.test>") == nil, "rcpt to the slow plugin")
check(mt.getreply(conn) == SMFIR_REPLYCODE, "rcpt gets our reply (451 4.3.0, on_error)")
check(os.time() - t0 <= 3, "answered within 3 s")
check(mt.rcptto(conn, "<user@example.test>") == nil, "another rcpt")
check(mt.getreply(conn) == SMFIR_CONTINUE, "the connection goes on")
mt.disconnect(conn)
