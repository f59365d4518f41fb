// dmarc-oracle.js - the DMARC verdicts of an independent implementation,
// npm mailauth@4.13.3, for test_w3_dmarc_oracle.py.
//
// Input (stdin, JSON): {"dns": "127.0.0.1:PORT", "timeout_ms": N,
//   "cases": [{"id": ..., "message": "the message text",
//              "spf": ["domain that passed SPF", ...],
//              "dkim": ["d= of a DKIM signature that passed", ...]}]}
// Output (stdout): one JSON object per case, in order:
//   {"id": ..., "result": "pass|fail|none|temperror|..."|null,
//    "policy": "reject|quarantine|none|..."|null, "from": [addresses],
//    "header_from": "...", "error": "..."}
// result null: mailauth gives no DMARC result at all (its dmarc() returns
// false: not exactly one From address).
//
// What mailauth's authenticate() does, step by step, with our SPF and DKIM
// results instead of its own: the From addresses come from its DKIM
// verifier's header parser (dkimVerify), spfDomains and dkimDomains are
// built as authenticate() builds them from passing results, and dmarc()
// fetches the record through a resolver pointed at the test DNS server.
// The module comes from NODE_PATH (npm install --prefix DIR mailauth@4.13.3:
// NODE_PATH=DIR/node_modules).
'use strict';

const { Resolver } = require('node:dns').promises;
const { dkimVerify } = require('mailauth/lib/dkim/verify');
const { dmarc } = require('mailauth/lib/dmarc');

async function readStdin() {
    const chunks = [];
    for await (const c of process.stdin) {
        chunks.push(c);
    }
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

async function main() {
    const input = await readStdin();
    const r = new Resolver({ timeout: input.timeout_ms || 2000, tries: 1 });
    r.setServers([input.dns]);
    // mailauth's resolver interface: (name, rrtype) -> the records, as
    // dns.promises.resolve gives them (TXT: arrays of strings)
    const resolver = (name, rrtype) => r.resolve(name, rrtype);

    for (const c of input.cases) {
        const out = { id: c.id, result: null, policy: null, from: [], header_from: null };
        try {
            const dk = await dkimVerify(Buffer.from(c.message, 'utf8'), {
                resolver,
                sender: 'oracle@example.invalid'
            });
            out.from = dk.headerFrom || [];
            const res = await dmarc({
                headerFrom: dk.headerFrom,
                spfDomains: c.spf,
                dkimDomains: c.dkim.map((d, i) => ({ id: i, domain: d })),
                resolver
            });
            if (res) {
                out.result = res.status.result;
                out.policy = res.policy || null;
                out.header_from = res.status.header ? res.status.header.from : null;
                if (res.error) {
                    out.error = res.error;
                }
            }
        } catch (err) {
            out.error = String(err && err.message ? err.message : err);
        }
        process.stdout.write(JSON.stringify(out) + '\n');
    }
}

main().catch(err => {
    process.stderr.write('dmarc-oracle: ' + (err && err.stack ? err.stack : err) + '\n');
    process.exit(1);
});
