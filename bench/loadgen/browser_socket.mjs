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
// Inflation keeps one raw-deflate stream per socket, as Chromium's WebSocketInflater does, so a
// message that refers back to earlier ones finds them in the stream's window (RFC 7692 7.2.2).
// It is kept when the server negotiated no context takeover too: those messages refer to nothing
// before them, so what the window holds is never read (and pako's inflateReset leaves a stream
// whose window has no size, which fails the next message longer than 64 KiB). Node's zlib has no
// synchronous stream (inflateRawSync opens and closes one per call: 8-10 us for a 30-byte
// message, and a copy of the window as its dictionary); pako's port of zlib's C API
// (`pako/lib/zlib/*`, an entry point its package exports) is one, at 1-2 us.
//
// The events and fields are those of `ws` that the load generator uses: "upgrade" (response with
// headers and socket), "open", "message" (Buffer), "close" (code), "error"; send(text), terminate().
import crypto from "node:crypto";
import { EventEmitter } from "node:events";
import http from "node:http";
import inflation from "pako/lib/zlib/inflate.js";
import ZStream from "pako/lib/zlib/zstream.js";

export const CHROMIUM_OFFER = "permessage-deflate; client_max_window_bits";
const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff]); // RFC 7692 7.2.2: appended before inflating
const MAX_MESSAGE = 64 * 1024 * 1024;
const Z_OK = 0, Z_STREAM_END = 1, Z_BUF_ERROR = -5, Z_SYNC_FLUSH = 2; // zlib.h
const CHUNK = 64 * 1024;
const scratch = new Uint8Array(CHUNK); // every socket inflates into it, one at a time, then copies

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

function rawStream(windowBits) {
  const stream = new ZStream();
  const status = inflation.inflateInit2(stream, -windowBits); // negative: raw deflate
  if (status !== Z_OK) throw new Error(`inflateInit2: ${status}`);
  return stream;
}

/** A socket's raw-deflate stream: zlib's inflate() with a sync flush per message. */
export class Inflater {
  constructor(windowBits, takeover) {
    this.stream = rawStream(windowBits);
    this.windowBits = windowBits;
    this.takeover = takeover;
  }

  /** The message a compressed payload holds; throws past MAX_MESSAGE or on corrupt data. */
  inflate(payload) {
    const stream = this.stream;
    if (stream === null) throw new Error("a message after a final deflate block under context takeover");
    stream.input = Buffer.concat([payload, TAIL]);
    stream.next_in = 0;
    stream.avail_in = stream.input.length;
    const parts = [];
    let length = 0;
    for (;;) {
      stream.output = scratch;
      stream.next_out = 0;
      stream.avail_out = CHUNK;
      const status = inflation.inflate(stream, Z_SYNC_FLUSH);
      if (status !== Z_OK && status !== Z_STREAM_END && status !== Z_BUF_ERROR) {
        throw new Error(`inflate: ${stream.msg || status}`);
      }
      length += stream.next_out;
      if (length > MAX_MESSAGE) throw new Error("message too large");
      parts.push(Buffer.from(scratch.subarray(0, stream.next_out)));
      if (status === Z_STREAM_END) {
        // A final block (BFINAL=1): the stream ends. Without context takeover the next message
        // starts a new one; with it, the next would need this window carried over, which this
        // client does not do (servers that flush with Z_SYNC_FLUSH, as all here, never end it).
        this.stream = this.takeover ? null : rawStream(this.windowBits);
        break;
      }
      if (stream.avail_out > 0 || status === Z_BUF_ERROR) break; // all in, all out
    }
    return parts.length === 1 ? parts[0] : Buffer.concat(parts, length);
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
    this._inflater = null;
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
      if (answer) this._inflater = new Inflater(answer.windowBits, !answer.serverNoContextTakeover);
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
    const message = this._compressed ? this._inflate(whole) : whole;
    if (message !== null) this.emit("message", message);
  }

  _inflate(payload) {
    try {
      return this._inflater.inflate(payload);
    } catch (error) {
      this._protocolError(error.message);
      return null;
    }
  }

  _protocolError(reason) {
    this.readyState = 2; // stops _receive's loop: no frame after this one is read
    this.emit("error", new Error(reason));
    this._closeCode = 1002;
    this.socket.destroy();
  }
}
