// Prints what one BrowserSocket receives, a JSON line each: the extension answer, then every
// message's length and SHA-256, then the close code. tests/test_bench_client.py holds it to what a
// real server sent.
//
// node receive.mjs --url ws://127.0.0.1:PORT/ [--deflate on|off] [--send TEXT]
import crypto from "node:crypto";
import { parseArgs } from "node:util";
import { BrowserSocket } from "./browser_socket.mjs";

const { values: a } = parseArgs({
  options: {
    url: { type: "string" },
    deflate: { type: "string", default: "on" },
    send: { type: "string", default: "" },
  },
});
const print = (value) => process.stdout.write(JSON.stringify(value) + "\n");
const socket = new BrowserSocket(a.url, [], { deflate: a.deflate !== "off" });
socket.on("upgrade", (response) => print({ answer: response.headers["sec-websocket-extensions"] || null }));
socket.on("open", () => { if (a.send) socket.send(a.send); });
socket.on("message", (data) => print({ bytes: data.length, sha256: crypto.createHash("sha256").update(data).digest("hex") }));
socket.on("error", (error) => print({ error: String(error.message || error) }));
socket.on("close", (code) => { print({ close: code }); process.exit(0); });
