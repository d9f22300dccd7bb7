// The graphql-http audit suite (the GraphQL-over-HTTP spec's own) against a live server.
// Prints one JSON line: {"ok": n, "warn": [...], "error": [...]}.
import { serverAudits } from "graphql-http";

const url = process.argv[2];
const token = process.argv[3];
const results = [];
for (const audit of serverAudits({
  url,
  fetchFn: (input, init = {}) => fetch(input, { ...init, headers: { ...(init.headers || {}), authorization: `Bearer ${token}` } }),
})) {
  results.push({ ...(await audit.fn()), name: audit.name });
}
const pick = (status) => results.filter((r) => r.status === status).map((r) => `${r.id} ${r.name}`);
console.log(JSON.stringify({ ok: pick("ok").length, warn: pick("warn"), notice: pick("notice"), error: pick("error") }));
