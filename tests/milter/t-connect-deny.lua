-- t-connect-deny: a client in this test's deny networks is refused at
-- connect (posternd answers it 554 5.7.1 "Access denied").
dofile(dir .. "/common.lua")
conn = open()
check(mt.conninfo(conn, "unknown", "198.18.0.1") == nil, "conninfo")
check(mt.getreply(conn) == SMFIR_REPLYCODE, "connect refused with our reply")
mt.disconnect(conn)
