-- t-spf-fail: 203.0.113.9 is outside good.example's record (-all): the
-- spf plugin refuses the MAIL with our reply (550 5.7.23).
dofile(dir .. "/common.lua")
conn = open()
check(mt.conninfo(conn, "unknown", "203.0.113.9") == nil, "conninfo")
check(mt.getreply(conn) == SMFIR_CONTINUE, "connect continues")
check(mt.helo(conn, "helo.example") == nil, "helo")
check(mt.mailfrom(conn, "<alice@good.example>") == nil, "mail")
check(mt.getreply(conn) == SMFIR_REPLYCODE, "mail refused with our reply")
mt.disconnect(conn)
