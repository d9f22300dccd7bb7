// Switchboard from Node with the graphql-ws client: authenticate, subscribe to events, open a note,
// print events as JSON lines, and when the connection drops, reconnect with backoff and resume
// from the last cursor seen in each group (a ResumeEvent says whether the gap was recovered).
//
//   npm ci
//   node client.mjs --url ws://127.0.0.1:8000/graphql --token "$(switchboard token --user 1)" --note 5

import { createClient } from "graphql-ws";
import WebSocket from "ws";
import { parseArgs } from "node:util";

const { values: args } = parseArgs({
  options: {
    url: { type: "string", default: "ws://127.0.0.1:8000/graphql" },
    token: { type: "string" },
    note: { type: "string" },
    count: { type: "string", default: "0" },
  },
});
if (!args.token) {
  console.error("--token is required (switchboard token --user <id>)");
  process.exit(2);
}

const EVENTS = `subscription($since: [SinceInput!]) {
  events(since: $since) {
    __typename
    ... on NotifyEvent { id group message status sentAt cursor }
    ... on DataEvent { id group payload sentAt cursor }
    ... on ResumeEvent { group recovered reason }
    ... on PresenceEvent { group kind userId }
  }
}`;
const limit = Number(args.count);
const cursors = new Map(); // group -> cursor of the last event seen there
let received = 0;
let backoff = 500;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function once(client, query, variables) {
  for await (const result of client.iterate({ query, variables })) return result;
}

while (true) {
  // One client per connection: after a drop we subscribe again with fresh cursors.
  const client = createClient({
    url: args.url,
    webSocketImpl: WebSocket,
    connectionParams: { authorization: `Bearer ${args.token}` },
    retryAttempts: 0,
    lazy: false,
    onNonLazyError: () => {},
  });
  try {
    if (args.note) {
      const opened = await once(client, "mutation($n: ID!) { openNote(noteId: $n) { id groups } }", { n: args.note });
      console.log(JSON.stringify({ opened: opened.data?.openNote ?? null }));
    }
    const since = [...cursors].map(([group, cursor]) => ({ group, cursor }));
    backoff = 500;
    for await (const result of client.iterate({ query: EVENTS, variables: { since: since.length ? since : null } })) {
      const event = result.data.events;
      console.log(JSON.stringify(event));
      if (event.cursor) cursors.set(event.group, event.cursor);
      if (event.__typename === "ResumeEvent") continue;
      received += 1;
      if (limit && received >= limit) {
        await client.dispose();
        process.exit(0);
      }
    }
  } catch (error) {
    console.error(`disconnected (${error?.code ?? error?.message ?? error}); reconnecting in ${backoff} ms`);
  } finally {
    await client.dispose();
  }
  await sleep(backoff);
  backoff = Math.min(backoff * 2, 30_000);
}
