// urql (@urql/core) with subscriptionExchange on graphql-ws, configured as the README says (see
// apollo.mjs for the same with Apollo Client). Prints one JSON line per event.
//
//   SWITCHBOARD_URLS=ws://127.0.0.1:8000/graphql SWITCHBOARD_TOKEN=... NOTES=5 node urql.mjs
import WebSocket from "ws";
import { Client, subscriptionExchange } from "@urql/core";
import { pipe, subscribe } from "wonka";
import { createClient } from "graphql-ws";

const urls = process.env.SWITCHBOARD_URLS.split(",");
const notes = (process.env.NOTES || "").split(",").filter(Boolean);
let attempt = 0;

// --- the documented configuration -------------------------------------------------------------
const cursors = {}; // group -> cursor of the last event seen
const wsClient = createClient({
  url: () => urls[attempt++ % urls.length],
  webSocketImpl: WebSocket, // Node 20 only
  connectionParams: () => ({ authorization: `Bearer ${process.env.SWITCHBOARD_TOKEN}`, resume: { ...cursors } }),
  retryAttempts: Infinity,
  shouldRetry: () => true,
  retryWait: () => new Promise((resolve) => setTimeout(resolve, 300)),
  on: { connected: () => console.log(JSON.stringify({ connected: true })) },
});
const client = new Client({
  url: urls[0].replace(/^ws/, "http"),
  exchanges: [
    subscriptionExchange({
      forwardSubscription: (request) => ({
        subscribe: (sink) => ({ unsubscribe: wsClient.subscribe({ ...request, query: request.query || "" }, sink) }),
      }),
    }),
  ],
});
const EVENTS = `
  subscription Events($notes: [ID!]) {
    events(notes: $notes) {
      __typename
      ... on NotifyEvent { group message cursor }
      ... on ResumeEvent { group recovered reason cursor }
    }
  }
`;
function remember(event) {
  if (event.cursor) cursors[event.group] = event.cursor; // every position, ResumeEvents' too
}
// ------------------------------------------------------------------------------------------------

pipe(
  client.subscription(EVENTS, { notes }),
  subscribe((result) => {
    if (result.error) {
      console.log(JSON.stringify({ error: String(result.error) }));
      return;
    }
    remember(result.data.events);
    console.log(JSON.stringify(result.data.events));
  }),
);
