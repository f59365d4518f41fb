-- t-discard: From none.example (p=none) and the rule
-- "dmarc-policy=none discard" of this test's policy: SMFIS_DISCARD.
dofile(dir .. "/common.lua")
conn = open()
envelope(conn, "unknown", "192.0.2.10", "mail.good.example", "<alice@good.example>",
	 "<user@example.test>", "QDIS1")
message(conn, std_fields("<a@none.example>", "discard"), "Hello.\r\n")
check(mt.getreply(conn) == SMFIR_DISCARD, "eom discards")
mt.disconnect(conn)
