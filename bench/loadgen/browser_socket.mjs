// A WebSocket client that does on the wire what Chromium does, at a browser's cost per message.
//
// The handshake offers "permessage-deflate; client_max_window_bits", Chromium's offer. Compressed
// messages are inflated synchronously, one whole message at a time, with the context the server
// negotiated (Chromium's WebSocketInflater: one zlib stream per socket, inflated in place). The
// `ws` package instead inflates every message through libuv's thread pool: measured here, about
// 140 us of CPU per 230-byte message (half of it system time), 30x what the inflation costs. With
// ten thousand sockets on two cores that load generator lags seconds behind the server and takes
// the CPU the server needs, which no browser (one tab per socket, on its own machine) does.
//
// Context takeover uses zlib's public API: a message that refers back to earlier ones inflates
// with the last window of what the socket has inflated as its dictionary (RFC 7692 7.2.2: the
// window is the uncompressed data), which is what a zlib stream kept between messages holds.
//
// The events and fields are those of `ws` that the load generator uses: "upgrade" (response with
// headers and socket), "open", "message" (Buffer), "close" (code), "error"; send(text), terminate().
import crypto from "node:crypto";
import { EventEmitter } from "node:events";
import http from "node:http";
import zlib from "node:zlib";

export const CHROMIUM_OFFER = "permessage-deflate; client_max_window_bits";
const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff]); // RFC 7692 7.2.2: appended before inflating
const SYNC = { finishFlush: zlib.constants.Z_SYNC_FLUSH };
const MAX_MESSAGE = 64 * 1024 * 1024;

/** The parameters of a permessage-deflate answer, or null when the server declined it. */
export function parseAnswer(header) {
  if (!header) return null;
  const [name, ...params] = header.split(";").map((p) => p.trim());
  if (name !== "permessage-deflate") return null;
  const answer = { serverNoContextTakeover: false, windowBits: 15 };
  for (const param of params) {
    const [key, value] = param.split("=").map((p) => p.trim().replace(/^"|"$/g, ""));
    if (key === "server_no_context_takeover") answer.serverNoContextTakeover = true;
    if (key === "server_max_window_bits") answer.windowBits = Number(value);
  }
  return answer;
}

/** What a socket has inflated lately: the dictionary for its next message. */
class Window {
  constructor(bits) {
    this.size = 1 << bits;
    this.buffer = Buffer.alloc(2 * this.size);
    this.length = 0;
  }

  view() {
    return this.buffer.subarray(Math.max(0, this.length - this.size), this.length);
  }

  push(data) {
    if (data.length >= this.size) {
      data.copy(this.buffer, 0, data.length - this.size);
      this.length = this.size;
      return;
    }
    if (this.length + data.length > this.buffer.length) {
      // Keep the last window's worth at the front: each byte is moved at most once per window.
      this.buffer.copy(this.buffer, 0, this.length - this.size, this.length);
      this.length = this.size;
    }
    data.copy(this.buffer, this.length);
    this.length += data.length;
  }
}

export class BrowserSocket extends EventEmitter {
  constructor(url, protocols = [], { deflate = true } = {}) {
    super();
    this.socket = null;
    this.readyState = 0;
    this._pending = null; // bytes of a frame not yet whole
    this._fragments = [];
    this._compressed = false;
    this._window = null;
    this._closeCode = 1006;
    const key = crypto.randomBytes(16).toString("base64");
    const target = new URL(url.replace(/^ws/, "http"));
    const request = http.request({
      host: target.hostname,
      port: target.port,
      path: target.pathname + target.search,
      headers: {
        Connection: "Upgrade",
        Upgrade: "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": key,
        ...(protocols.length ? { "Sec-WebSocket-Protocol": protocols.join(", ") } : {}),
        ...(deflate ? { "Sec-WebSocket-Extensions": CHROMIUM_OFFER } : {}),
      },
    });
    request.on("response", (response) => {
      response.resume();
      this._fail(new Error(`Unexpected server response: ${response.statusCode}`));
    });
    request.on("error", (error) => this._fail(error));
    request.on("upgrade", (response, socket, head) => {
      const expected = crypto.createHash("sha1").update(key + GUID).digest("base64");
      if (response.headers["sec-websocket-accept"] !== expected) {
        socket.destroy();
        this._fail(new Error("Invalid Sec-WebSocket-Accept header"));
        return;
      }
      const answer = parseAnswer(response.headers["sec-websocket-extensions"]);
      this.deflate = answer;
      if (answer && !answer.serverNoContextTakeover) this._window = new Window(answer.windowBits);
      this.socket = socket;
      this.readyState = 1;
      socket.setNoDelay(true);
      socket.on("data", (chunk) => this._receive(chunk));
      socket.on("close", () => this._closed());
      socket.on("error", (error) => this.emit("error", error));
      this.emit("upgrade", { headers: response.headers, socket });
      this.emit("open");
      if (head.length) this._receive(head);
    });
    request.end();
  }

  send(text) {
    this._write(0x1, Buffer.from(text));
  }

  terminate() {
    if (this.socket) this.socket.destroy();
  }

  _fail(error) {
    if (this.readyState === 3) return;
    this.emit("error", error);
    this._closed();
  }

  _closed() {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.emit("close", this._closeCode);
  }

  // -- frames -----------------------------------------------------------------------------------

  _write(opcode, payload) {
    if (this.readyState !== 1) return;
    const n = payload.length;
    const header = Buffer.alloc(n < 126 ? 6 : n < 65536 ? 8 : 14);
    header[0] = 0x80 | opcode;
    let at = 2;
    if (n < 126) header[1] = 0x80 | n;
    else if (n < 65536) { header[1] = 0x80 | 126; header.writeUInt16BE(n, 2); at = 4; }
    else { header[1] = 0x80 | 127; header.writeBigUInt64BE(BigInt(n), 2); at = 10; }
    const mask = crypto.randomBytes(4);
    mask.copy(header, at);
    const masked = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) masked[i] = payload[i] ^ mask[i & 3];
    this.socket.write(Buffer.concat([header, masked]));
  }

  _receive(chunk) {
    let data = this._pending ? Buffer.concat([this._pending, chunk]) : chunk;
    this._pending = null;
    let at = 0;
    while (this.readyState === 1) {
      if (data.length - at < 2) break;
      const b0 = data[at], b1 = data[at + 1];
      if (b1 & 0x80) return this._protocolError("a server frame must not be masked");
      let length = b1 & 0x7f, start = at + 2;
      if (length === 126) {
        if (data.length - at < 4) break;
        length = data.readUInt16BE(at + 2); start = at + 4;
      } else if (length === 127) {
        if (data.length - at < 10) break;
        length = Number(data.readBigUInt64BE(at + 2)); start = at + 10;
      }
      if (length > MAX_MESSAGE) return this._protocolError("frame too large");
      if (data.length - start < length) break;
      this._frame(b0, data.subarray(start, start + length));
      at = start + length;
    }
    if (at < data.length) this._pending = Buffer.from(data.subarray(at)); // own the few bytes
  }

  _frame(b0, payload) {
    const fin = (b0 & 0x80) !== 0, rsv1 = (b0 & 0x40) !== 0, opcode = b0 & 0x0f;
    if (opcode === 0x8) {
      this._closeCode = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
      this._write(0x8, payload.subarray(0, 2));
      this.socket.end();
      return;
    }
    if (opcode === 0x9) return this._write(0xa, payload);
    if (opcode === 0xa) return;
    if (opcode === 0x1 || opcode === 0x2) {
      if (rsv1 && !this.deflate) return this._protocolError("compressed frame without the extension");
      this._compressed = rsv1;
      this._fragments = [];
    }
    this._fragments.push(payload);
    if (!fin) return;
    const whole = this._fragments.length === 1 ? this._fragments[0] : Buffer.concat(this._fragments);
    this._fragments = [];
    this.emit("message", this._compressed ? this._inflate(whole) : whole);
  }

  _inflate(payload) {
    const input = Buffer.concat([payload, TAIL]);
    const window = this._window;
    const options = window && window.length ? { ...SYNC, dictionary: window.view() } : SYNC;
    const out = zlib.inflateRawSync(input, options);
    if (window) window.push(out);
    return out;
  }

  _protocolError(reason) {
    this.emit("error", new Error(reason));
    this._closeCode = 1002;
    this.socket.destroy();
  }
}
