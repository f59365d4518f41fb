-- t-dmarc-reject: SPF passes for the envelope's other.example, which does
-- not align with From good.example (p=reject), no DKIM: our 550 5.7.1 at
-- end of message.
dofile(dir .. "/common.lua")
conn = open()
envelope(conn, "unknown", "192.0.2.10", "helo.example", "<bounce@other.example>",
	 "<user@example.test>", "QREJ1")
message(conn, std_fields("<alice@good.example>", "reject"), "Hello.\r\n")
check(mt.getreply(conn) == SMFIR_REPLYCODE, "eom answers with our reply")
check(mt.eom_check(conn, MT_SMTPREPLY, "550", "5.7.1",
	"Message refused: the DMARC policy of good.example (p=reject) does not authorize it"),
	"550 5.7.1 with the DMARC text")
check(not mt.eom_check(conn, MT_HDRINSERT), "nothing inserted")
mt.disconnect(conn)
