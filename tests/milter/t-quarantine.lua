-- t-quarantine: From quar.example (p=quarantine): smfi_quarantine, the
-- X-Postern-Quarantine field and our Authentication-Results inserted.
dofile(dir .. "/common.lua")
conn = open()
envelope(conn, "unknown", "192.0.2.10", "mail.good.example", "<bounce@good.example>",
	 "<user@example.test>", "QQUAR1")
message(conn, std_fields("<a@quar.example>", "quarantine"), "Hello.\r\n")
check(mt.getreply(conn) == SMFIR_CONTINUE, "eom continues")
check(mt.eom_check(conn, MT_QUARANTINE), "quarantined")
check(mt.eom_check(conn, MT_HDRINSERT, "X-Postern-Quarantine"), "X-Postern-Quarantine inserted")
check(mt.eom_check(conn, MT_HDRINSERT, "Authentication-Results"), "A-R inserted")
mt.disconnect(conn)
