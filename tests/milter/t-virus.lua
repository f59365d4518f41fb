-- t-virus: EICAR in the body: our 554 5.7.0 naming the signature.
dofile(dir .. "/common.lua")
conn = open()
envelope(conn, "unknown", "192.0.2.10", "mail.good.example", "<alice@good.example>",
	 "<user@example.test>", "QVIR1")
message(conn, std_fields("<alice@good.example>", "virus"),
	"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*\r\n")
check(mt.getreply(conn) == SMFIR_REPLYCODE, "eom answers with our reply")
check(mt.eom_check(conn, MT_SMTPREPLY, "554", "5.7.0",
	"Message refused: virus Test.EICAR.UNOFFICIAL found"), "554 5.7.0 names the virus")
mt.disconnect(conn)
