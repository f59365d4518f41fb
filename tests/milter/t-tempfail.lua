-- t-tempfail: _dmarc.broken.example answers SERVFAIL: dmarc=temperror and
-- the rule "dmarc=temperror tempfail": our 451 4.4.3.
dofile(dir .. "/common.lua")
conn = open()
envelope(conn, "unknown", "192.0.2.10", "mail.broken.example", "<alice@broken.example>",
	 "<user@example.test>", "QTMP1")
message(conn, std_fields("<alice@broken.example>", "tempfail"), "Hello.\r\n")
check(mt.getreply(conn) == SMFIR_REPLYCODE, "eom answers with our reply")
check(mt.eom_check(conn, MT_SMTPREPLY, "451", "4.4.3",
	"Temporary failure looking up the DMARC policy of broken.example"), "451 4.4.3 with the DMARC text")
mt.disconnect(conn)
