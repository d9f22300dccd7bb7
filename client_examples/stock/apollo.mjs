// Apollo Client 4 with GraphQLWsLink, configured as the README says: the notes are named in the
// subscription itself, and connectionParams carries the cursor of the last event seen per group,
// so that graphql-ws's own reconnect re-joins the notes and resumes every group.
// Prints one JSON line per event (and {"connected": true} per connection).
//
//   SWITCHBOARD_URLS=ws://127.0.0.1:8000/graphql SWITCHBOARD_TOKEN=... NOTES=5 node apollo.mjs
import WebSocket from "ws";
import { ApolloClient, InMemoryCache, gql } from "@apollo/client";
import { GraphQLWsLink } from "@apollo/client/link/subscriptions";
import { createClient } from "graphql-ws";

const urls = process.env.SWITCHBOARD_URLS.split(",");
const notes = (process.env.NOTES || "").split(",").filter(Boolean);
let attempt = 0;

// --- the documented configuration -------------------------------------------------------------
const cursors = {}; // group -> cursor of the last event seen
const wsClient = createClient({
  url: () => urls[attempt++ % urls.length], // one URL, or several servers tried in turn
  webSocketImpl: WebSocket, // Node 20 has no global WebSocket; browsers need no such line
  connectionParams: () => ({ authorization: `Bearer ${process.env.SWITCHBOARD_TOKEN}`, resume: { ...cursors } }),
  retryAttempts: Infinity,
  shouldRetry: () => true,
  retryWait: () => new Promise((resolve) => setTimeout(resolve, 300)),
  on: { connected: () => console.log(JSON.stringify({ connected: true })) },
});
const client = new ApolloClient({ link: new GraphQLWsLink(wsClient), cache: new InMemoryCache() });
const EVENTS = gql`
  subscription Events($notes: [ID!]) {
    events(notes: $notes) {
      __typename
      ... on NotifyEvent { group message cursor }
      ... on ResumeEvent { group recovered reason cursor }
    }
  }
`;
function remember(event) {
  // Every event with a cursor is a position to keep; a ResumeEvent gives one for every group the
  // subscription covers when it starts, even one with no event yet.
  if (event.cursor) cursors[event.group] = event.cursor;
}
// ------------------------------------------------------------------------------------------------

client.subscribe({ query: EVENTS, variables: { notes }, fetchPolicy: "no-cache" }).subscribe({
  next: ({ data }) => {
    remember(data.events);
    console.log(JSON.stringify(data.events));
  },
  error: (error) => console.log(JSON.stringify({ error: String(error) })),
});
