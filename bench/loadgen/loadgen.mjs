// Load generator: N WebSocket sessions against one server, speaking its protocol, measuring for
// every delivered event the time from publish (the "t" the publisher put in it) to receipt.
//
// node loadgen.mjs --url ws://127.0.0.1:8000/graphql --mode graphql|channels|floor|sse|socketio --n 1000
//   --events M [--token-prefix ...] [--idle 10] [--deflate on|off] [--client browser|ws]
// Every socket offers permessage-deflate exactly as Chromium does ("permessage-deflate;
// client_max_window_bits"), unless --deflate off. The sockets are BrowserSocket's
// (browser_socket.mjs: inflated as a browser inflates, synchronously, one message at a time),
// or with --client ws the `ws` package's (inflated through its thread pool, at ~30x the CPU per
// message: past a few thousand sockets that client, not the server, sets the pace). It counts the
// bytes each socket read from the wire after READY (frames as sent: compressed where negotiated).
// Prints "CONNECTED <n>" once every session is subscribed, "READY" once every session has seen a
// probe (seq -1), then one JSON line of results when every session has M events or the stream
// has been idle for --idle seconds.
import WebSocket from "ws";
import { BrowserSocket } from "./browser_socket.mjs";
import http from "node:http";
import { randomUUID } from "node:crypto";
import { parseArgs } from "node:util";
import { performance } from "node:perf_hooks";

const { values: a } = parseArgs({
  options: {
    url: { type: "string" },
    mode: { type: "string", default: "graphql" },
    n: { type: "string", default: "100" },
    events: { type: "string", default: "100" },
    tokens: { type: "string", default: "" },
    idle: { type: "string", default: "10" },
    concurrency: { type: "string", default: "200" },
    deflate: { type: "string", default: "on" },
    client: { type: "string", default: "browser" },
  },
});
const N = Number(a.n), M = Number(a.events), IDLE = Number(a.idle) * 1000;
const tokens = a.tokens ? a.tokens.split(",") : [];
const now = () => (performance.timeOrigin + performance.now()) / 1000;
const SEQ = /"seq":\s*(-?\d+)/, T = /"t":\s*([0-9.e+-]+)/;

const latencies = new Float64Array(Math.max(1, N * M));
// Per event: the first and the last receipt (publish to receipt), to tell a late start of the
// fan-out (every socket late) from a long fan-out (the spread between first and last socket).
const firstLat = new Float64Array(M).fill(Infinity), lastLat = new Float64Array(M).fill(-Infinity);
let nLat = 0, deliveries = 0, duplicates = 0, connected = 0, probed = 0, closed = 0;
let first = 0, last = 0, lastActivity = now();
let bytesAtReady = 0;
const bytesRead = () => sessions.reduce((sum, s) => sum + (s.socket ? s.socket.bytesRead : 0), 0);
const sessions = [];

function onEvent(s, text) {
  const m = SEQ.exec(text);
  if (!m) return;
  const seq = Number(m[1]);
  lastActivity = now();
  if (seq < 0) {
    if (!s.probed) { s.probed = true; probed += 1; checkReady(); }
    return;
  }
  const t = Number(T.exec(text)[1]);
  const at = now();
  if (s.seen[seq]) { duplicates += 1; return; }
  s.seen[seq] = 1; s.count += 1; deliveries += 1;
  if (!first) first = at;
  last = at;
  if (nLat < latencies.length) latencies[nLat++] = at - t;
  if (seq < M) { firstLat[seq] = Math.min(firstLat[seq], at - t); lastLat[seq] = Math.max(lastLat[seq], at - t); }
  if (s.count === M) { s.done = true; maybeFinish(); }
}

let announced = false;
function checkReady() {
  const alive = sessions.filter((x) => x.code === null).length;
  if (!announced && connected === N && probed >= alive) { announced = true; bytesAtReady = bytesRead(); console.log("READY"); }
}

// The runner writes a line once the probes still on their way have arrived (the server is quiet):
// the bytes on the wire are counted from then, the events' only.
process.stdin.on("data", () => { bytesAtReady = bytesRead(); });

// --mode sse: each session is a GraphQL-over-SSE stream (POST, Accept: text/event-stream), as
// EventSource or graphql-sse opens it; each `data:` line is one event.
const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
function openSse(i) {
  return new Promise((resolve) => {
    const s = { i, seen: new Uint8Array(M), count: 0, probed: false, done: false, code: null };
    sessions.push(s);
    const token = tokens.length ? tokens[i % tokens.length] : "";
    const body = JSON.stringify({ query: "subscription { data { payload } }" });
    const request = http.request(a.url.replace(/^ws/, "http"), {
      method: "POST",
      agent,
      headers: {
        accept: "text/event-stream",
        "content-type": "application/json",
        "content-length": Buffer.byteLength(body),
        ...(token ? { authorization: `Bearer ${token}` } : {}),
      },
    });
    let ready = false;
    const done = () => { if (!ready) { ready = true; connected += 1; resolve(); } };
    request.on("response", (response) => {
      if (response.statusCode !== 200) {
        s.error = `HTTP ${response.statusCode}`;
        if (!ready) { ready = true; s.failed = true; connected += 1; resolve(); }
        response.resume();
        return;
      }
      s.socket = response.socket;
      s.answer = null; // HTTP streams negotiate no WebSocket extension
      let buffer = "";
      response.setEncoding("utf8");
      response.on("data", (chunk) => {
        buffer += chunk;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const at = block.indexOf("data: ");
          if (at >= 0) onEvent(s, block.slice(at + 6));
        }
      });
      response.on("end", () => { s.code = "ended"; closed += 1; if (!s.done) { s.done = true; maybeFinish(); } checkReady(); });
      // Subscribed once the stream is open (the server subscribes before answering).
      setTimeout(done, 0);
    });
    request.on("error", (error) => {
      s.error = String(error.message || error);
      if (!ready) { ready = true; s.failed = true; connected += 1; resolve(); }
    });
    s.ws = { terminate: () => request.destroy() };
    request.end(body);
  });
}

function open(i) {
  if (a.mode === "sse") return openSse(i);
  return new Promise((resolve) => {
    const s = { i, seen: new Uint8Array(M), count: 0, probed: false, done: false, code: null };
    sessions.push(s);
    const token = tokens.length ? tokens[i % tokens.length] : "";
    let url = a.url;
    if (a.mode === "channels") url += `?user=${i % 100}`;
    const protocols = a.mode === "graphql" ? ["graphql-transport-ws"] : [];
    const ws = a.client === "ws"
      ? new WebSocket(url, protocols, {
        // Node's ws inflates through a limiter of 10 concurrent zlib calls by default: 1000 sockets
        // would wait in its queue, which no browser (one socket per tab) does.
        perMessageDeflate: a.deflate === "off" ? false : { concurrencyLimit: 1000 },
      })
      : new BrowserSocket(url, protocols, { deflate: a.deflate !== "off" });
    s.ws = ws;
    ws.on("upgrade", (response) => {
      s.socket = response.socket;
      s.answer = response.headers["sec-websocket-extensions"] || null; // what the server negotiated
    });
    let ready = false;
    const done = () => { if (!ready) { ready = true; connected += 1; resolve(); } };
    ws.on("open", () => {
      if (a.mode === "socketio") return; // the server speaks first (engine.io's open packet)
      if (a.mode === "graphql") {
        ws.send(JSON.stringify({ type: "connection_init", payload: token ? { authorization: `Bearer ${token}` } : {} }));
      } else {
        done();
      }
    });
    ws.on("message", (data) => {
      const text = data.toString();
      if (a.mode === "socketio") {
        // engine.io v4 over a WebSocket: "0{...}" open, "40" connect to "/", "2"/"3" ping/pong,
        // '42["data",{...}]' an event; what socket.io-client does, without its objects.
        if (text === "2") { ws.send("3"); return; }
        if (text.startsWith("0{")) { ws.send("40"); return; }
        if (text.startsWith("40")) { done(); return; }
      }
      if (a.mode === "graphql") {
        if (text.startsWith('{"type":"connection_ack"')) {
          // A UUID, as graphql-ws (and so Apollo Client and urql) names every operation: each
          // socket's frames differ in it, so nothing is shared by a frame's bytes alone.
          ws.send(JSON.stringify({ id: randomUUID(), type: "subscribe", payload: { query: "subscription { data { payload } }" } }));
          done();
          return;
        }
        if (text.includes('"type":"ping"')) { ws.send('{"type":"pong"}'); return; }
      }
      onEvent(s, text);
    });
    ws.on("close", (code) => {
      s.code = code; closed += 1;
      if (!ready) { ready = true; s.failed = true; connected += 1; resolve(); }
      if (!s.done) { s.done = true; maybeFinish(); }
      checkReady();
    });
    ws.on("error", (error) => { s.error = String(error.message || error); });
  });
}

function perEvent() {
  // Medians over events of: the first socket's latency, and the spread to the last socket's.
  const seen = [...Array(M).keys()].filter((i) => Number.isFinite(firstLat[i]));
  if (!seen.length) return null;
  const med = (xs) => xs.sort((x, y) => x - y)[Math.floor(xs.length / 2)];
  const spread = seen.map((i) => lastLat[i] - firstLat[i]);
  return {
    first_p50: med(seen.map((i) => firstLat[i])),
    first_max: Math.max(...seen.map((i) => firstLat[i])),
    spread_p50: med([...spread]),
    spread_max: Math.max(...spread),
  };
}

let finished = false;
function maybeFinish(force = false) {
  if (finished) return;
  if (!force && sessions.some((s) => !s.done)) return;
  finished = true;
  const lat = Array.from(latencies.subarray(0, nLat)).sort((x, y) => x - y);
  const q = (p) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] : null);
  const elapsed = last - first;
  const lost = N * M - deliveries;
  const wire = bytesRead() - bytesAtReady;
  console.log(JSON.stringify({
    n: N, events: M, connected, deliveries, duplicates, lost,
    failed_to_connect: sessions.filter((s) => s.failed).length,
    closed_early: sessions.filter((s) => s.code !== null).length,
    close_codes: [...new Set(sessions.filter((s) => s.code !== null).map((s) => s.code))],
    elapsed_s: elapsed,
    deliveries_per_s: elapsed > 0 ? deliveries / elapsed : null,
    latency_s: { p50: q(0.5), p90: q(0.9), p99: q(0.99), max: lat.length ? lat[lat.length - 1] : null },
    per_event: perEvent(),
    extensions: sessions.length ? sessions[0].answer : null,
    wire_bytes: wire,
    wire_bytes_per_delivery: deliveries ? wire / deliveries : null,
  }));
  for (const s of sessions) s.ws.terminate();
  setTimeout(() => process.exit(0), 100);
}

const CONC = Number(a.concurrency);
for (let i = 0; i < N; i += CONC) {
  await Promise.all(Array.from({ length: Math.min(CONC, N - i) }, (_, k) => open(i + k)));
}
const failed = sessions.filter((s) => s.failed);
console.log(`CONNECTED ${N - failed.length} failed=${failed.length} ${JSON.stringify([...new Set(failed.map((s) => s.error || s.code))])}`);
lastActivity = now();
setInterval(() => { if (now() - lastActivity > IDLE / 1000) maybeFinish(true); }, 250);
