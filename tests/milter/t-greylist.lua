-- t-greylist: 192.0.2.200 is outside greylist's allow_networks: the RCPT
-- gets our 451 (a custom reply). With {auth_authen} (an authenticated
-- client, the MTA's macro) the same triplet is exempt.
dofile(dir .. "/common.lua")
conn = open()
check(mt.conninfo(conn, "unknown", "192.0.2.200") == nil, "conninfo")
check(mt.getreply(conn) == SMFIR_CONTINUE, "connect continues")
check(mt.helo(conn, "mail.grey.example") == nil, "helo")
check(mt.mailfrom(conn, "<g1@grey.example>") == nil, "mail")
check(mt.getreply(conn) == SMFIR_CONTINUE, "mail continues")
check(mt.rcptto(conn, "<user@example.test>") == nil, "rcpt")
check(mt.getreply(conn) == SMFIR_REPLYCODE, "rcpt gets our reply (451 greylisted)")
mt.abort(conn)
mt.macro(conn, SMFIC_MAIL, "{auth_authen}", "g2", "i", "QGREY2")
check(mt.mailfrom(conn, "<g2@grey.example>") == nil, "mail (authenticated)")
check(mt.getreply(conn) == SMFIR_CONTINUE, "mail continues")
check(mt.rcptto(conn, "<user@example.test>") == nil, "rcpt (authenticated)")
check(mt.getreply(conn) == SMFIR_CONTINUE, "authenticated: not greylisted")
mt.disconnect(conn)
