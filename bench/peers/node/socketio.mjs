// Socket.IO 4 with its Redis adapter, as a JS team would run it behind several processes. An
// event the app publishes (plain Redis PUBLISH on --channel, as the floor's publisher sends it)
// is broadcast to every connected socket with io.emit, through the adapter (which also publishes
// it for the other Socket.IO processes: the cost a cluster pays).
//
//   node socketio.mjs --port 8000 --redis redis://127.0.0.1:6379/0 [--channel socketio:all]
import { createServer } from "node:http";
import { parseArgs } from "node:util";
import { Server } from "socket.io";
import { createAdapter } from "@socket.io/redis-adapter";
import { createClient } from "redis";

const { values: a } = parseArgs({
  options: {
    port: { type: "string" },
    redis: { type: "string" },
    channel: { type: "string", default: "socketio:all" },
  },
});
const pub = createClient({ url: a.redis });
const sub = pub.duplicate();
const feed = pub.duplicate();
await Promise.all([pub.connect(), sub.connect(), feed.connect()]);
const http = createServer();
// Socket.IO 4 declines permessage-deflate by default, as Switchboard does.
const io = new Server(http, { adapter: createAdapter(pub, sub), transports: ["websocket"] });
await feed.subscribe(a.channel, (message) => io.emit("data", JSON.parse(message)));
http.listen(Number(a.port), "127.0.0.1");
