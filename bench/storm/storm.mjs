// The reconnect storm: N graphql-ws clients (the stock client, as Apollo and urql use it), each
// subscribed to events(notes: [its note]) with resume cursors in connectionParams (README).
// Prints SUBSCRIBED, then READY once every client has seen an event of its note; after a line
// "GO" on stdin (the servers restarted), one JSON line once every client has resumed its note and
// received the M events published during the outage (or --timeout passes).
import WebSocket from "ws";
import { createClient } from "graphql-ws";
import { parseArgs } from "node:util";
import readline from "node:readline";

const { values: a } = parseArgs({
  options: {
    urls: { type: "string" }, tokens: { type: "string" }, n: { type: "string", default: "5000" },
    notes: { type: "string", default: "100" }, missed: { type: "string", default: "5" },
    timeout: { type: "string", default: "240" },
  },
});
const urls = a.urls.split(","), tokens = a.tokens.split(","), N = Number(a.n), NOTES = Number(a.notes);
const MISSED = Number(a.missed);
const EVENTS = `subscription($notes: [ID!]) { events(notes: $notes) { __typename
  ... on NotifyEvent { group message cursor } ... on ResumeEvent { group recovered reason cursor } } }`;
const sessions = [];
let subscribed = 0, ready = 0, done = 0, go = 0;
const closes = {}; // close code -> how many, after GO: why sessions had to try again

function start(i) {
  const s = { i, note: `note_storm${i % NOTES}`, cursors: {}, seen: false, resumed: null, missed: new Set(), dup: 0, done: false, attempt: 0 };
  sessions.push(s);
  const client = createClient({
    url: () => urls[(i + s.attempt++) % urls.length],
    webSocketImpl: WebSocket,
    connectionParams: () => ({ authorization: `Bearer ${tokens[i % tokens.length]}`, resume: { ...s.cursors } }),
    retryAttempts: Infinity,
    shouldRetry: () => true,
    retryWait: () => new Promise((r) => setTimeout(r, 200 + Math.random() * 1800)), // jittered
    on: { closed: (e) => { if (go) closes[e?.code ?? "none"] = (closes[e?.code ?? "none"] || 0) + 1; } },
  });
  client.subscribe({ query: EVENTS, variables: { notes: [String(i % NOTES)].map((x) => `storm${x}`) } }, {
    next: ({ data }) => {
      const e = data.events;
      if (e.group !== s.note) return;
      if (e.cursor && !(e.__typename === "ResumeEvent" && e.recovered)) s.cursors[e.group] = e.cursor;
      if (e.__typename === "ResumeEvent") { s.resumed = e.recovered; check(s); return; }
      if (!s.seen) { s.seen = true; ready += 1; if (ready === N) console.log("READY"); }
      if (e.message && e.message.startsWith("missed-")) {
        if (s.missed.has(e.message)) s.dup += 1;
        s.missed.add(e.message);
        check(s);
      }
    },
    error: (err) => console.error(String(err)),
    complete: () => {},
  });
  subscribed += 1;
}

function check(s) {
  if (!go || s.done) return;
  if (s.resumed !== null && (s.missed.size === MISSED || s.resumed === false)) {
    s.done = true; s.at = (performance.now() - go) / 1000; done += 1;
    if (done === N) finish();
  }
}

function finish() {
  const elapsed = (performance.now() - go) / 1000;
  const at = sessions.map((s) => s.at).sort((x, y) => x - y);
  const pct = (q) => at[Math.min(at.length - 1, Math.floor(q * at.length))];
  console.log(JSON.stringify({
    n: N, elapsed_s: elapsed, done,
    recovered_true: sessions.filter((s) => s.resumed === true).length,
    recovered_false: sessions.filter((s) => s.resumed === false).length,
    all_missed: sessions.filter((s) => s.missed.size === MISSED).length,
    duplicates: sessions.reduce((x, s) => x + s.dup, 0),
    back_s: { p10: pct(0.1), p50: pct(0.5), p90: pct(0.9), max: at[at.length - 1] },
    closes,
  }));
  process.exit(0);
}

for (let i = 0; i < N; i++) {
  start(i);
  if (i % 200 === 199) await new Promise((r) => setTimeout(r, 50));
}
console.log("SUBSCRIBED");
readline.createInterface({ input: process.stdin }).on("line", (line) => {
  if (line.trim() === "GO") {
    go = performance.now();
    for (const s of sessions) check(s);
    setTimeout(() => { console.log(JSON.stringify({ timeout: true, done })); finish(); }, Number(a.timeout) * 1000);
  }
});
