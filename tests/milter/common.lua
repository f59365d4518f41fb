-- common.lua - shared by the miltertest scripts of tests/milter/ (run by
-- tests/e2e/test_z2_miltertest.py: miltertest -D port=P -D dir=D -s t-*.lua).
-- Each script plays the MTA as Sendmail would: negotiate, connect with a
-- client address, HELO, MAIL, RCPT, the header, the body, end of message;
-- every check prints "ok WHAT" or raises "FAILED: WHAT" (miltertest exits 1).

function check(cond, what)
	if not cond then
		error("FAILED: " .. what)
	end
	mt.echo("ok " .. what)
end

-- open: connect and negotiate (miltertest offers every action and step)
function open()
	local conn = mt.connect("inet:" .. port .. "@127.0.0.1", 40, 0.25)
	check(conn ~= nil, "connect to postern-milter on port " .. port)
	return conn
end

-- envelope: connect info, HELO, MAIL, RCPT, each answered "continue"
function envelope(conn, name, addr, helo, from, rcpt, qid)
	check(mt.conninfo(conn, name, addr) == nil, "conninfo " .. addr)
	check(mt.getreply(conn) == SMFIR_CONTINUE, "connect " .. addr .. " continues")
	check(mt.helo(conn, helo) == nil, "helo")
	check(mt.getreply(conn) == SMFIR_CONTINUE, "helo continues")
	if qid ~= nil then
		mt.macro(conn, SMFIC_MAIL, "i", qid)
	end
	check(mt.mailfrom(conn, from) == nil, "mail from " .. from)
	check(mt.getreply(conn) == SMFIR_CONTINUE, "mail continues")
	check(mt.rcptto(conn, rcpt) == nil, "rcpt to " .. rcpt)
	check(mt.getreply(conn) == SMFIR_CONTINUE, "rcpt continues")
end

-- message: DATA, the header fields (pairs), end of header, the body, then
-- end of message
function message(conn, fields, body)
	check(mt.data(conn) == nil, "data")
	for i = 1, #fields, 2 do
		check(mt.header(conn, fields[i], fields[i + 1]) == nil, "header " .. fields[i])
	end
	check(mt.eoh(conn) == nil, "eoh")
	check(mt.bodystring(conn, body) == nil, "body")
	check(mt.eom(conn) == nil, "eom")
end

function std_fields(from, subject)
	return { "From", from, "To", "<user@example.test>", "Subject", subject,
		 "Message-ID", "<" .. subject .. "@client.example>",
		 "Date", "Sun, 01 Jan 2023 00:00:00 +0000" }
end

-- ar: the Authentication-Results we inserted (nil if none)
function ar(conn)
	return mt.getheader(conn, "Authentication-Results", 0)
end
