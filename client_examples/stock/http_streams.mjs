// Subscriptions over plain HTTP with stock clients, configured as the README says:
//   KIND=sse          graphql-sse, distinct connections mode (one SSE response per subscription)
//   KIND=sse-single   graphql-sse, single connection mode (PUT reservation, one SSE stream)
//   KIND=apollo       Apollo Client 4 HttpLink (multipart subscriptions), with RetryLink
//   KIND=urql-sse     urql with subscriptionExchange on graphql-sse
//   KIND=urql         urql with fetchSubscriptions (SSE; urql does not retry it)
// Where the client can send headers on every attempt (graphql-sse, Apollo with setContext), it
// keeps each group's cursor and sends them as Last-Event-ID, so a reconnect after a restart
// resumes every group, even one with no event yet.
// Prints one JSON line per event, {"error": ..., "code": ...} per refusal.
//
//   SWITCHBOARD_URL=http://127.0.0.1:8000/graphql SWITCHBOARD_TOKEN=... NOTES=5 KIND=sse node http_streams.mjs
// OPEN_NOTE=7 (sse-single) also opens note 7 with openNote on the stream's own session.
// QUERY overrides the subscription (to see a refusal).
import { createClient } from "graphql-sse";
import { ApolloClient, InMemoryCache, HttpLink, ApolloLink, gql } from "@apollo/client";
import { RetryLink } from "@apollo/client/link/retry";
import { SetContextLink } from "@apollo/client/link/context";
import { Client, fetchExchange, subscriptionExchange } from "@urql/core";
import { pipe, subscribe } from "wonka";

const url = process.env.SWITCHBOARD_URL;
const kind = process.env.KIND || "sse";
const notes = (process.env.NOTES || "").split(",").filter(Boolean);
const headers = process.env.SWITCHBOARD_TOKEN ? { authorization: `Bearer ${process.env.SWITCHBOARD_TOKEN}` } : {};
const EVENTS =
  process.env.QUERY ||
  `subscription Events($notes: [ID!]) {
    events(notes: $notes) {
      __typename
      ... on NotifyEvent { group message cursor }
      ... on ResumeEvent { group recovered reason cursor }
    }
  }`;

// --- the documented resume configuration ------------------------------------------------------
const cursors = {}; // group -> cursor of the last event seen (ResumeEvents give one per group)
function remember(event) {
  if (event && event.cursor) cursors[event.group] = event.cursor;
}
// Our SSE ids' form, "group=cursor ...": empty on the first attempt, which asks for positions.
const lastEventId = () => Object.entries(cursors).map(([group, cursor]) => `${group}=${cursor}`).join(" ");
const resumeHeaders = () => ({ ...headers, "last-event-id": lastEventId() });
// ------------------------------------------------------------------------------------------------

function print(result) {
  if (result.errors && result.errors.length) {
    const [first] = result.errors;
    console.log(JSON.stringify({ error: first.message, code: first.extensions && first.extensions.code }));
  } else if (result.data && result.data.events) {
    remember(result.data.events);
    console.log(JSON.stringify(result.data.events));
  } else if (result.data) {
    console.log(JSON.stringify({ result: result.data }));
  }
}
const failed = (error) => console.log(JSON.stringify({ error: String(error) }));

function followUrql(client) {
  pipe(
    client.subscription(EVENTS, { notes }),
    subscribe((result) => {
      if (result.error) {
        const found = (result.error.graphQLErrors || [])[0];
        console.log(JSON.stringify({ error: String(result.error), code: found && found.extensions && found.extensions.code }));
        return;
      }
      print(result);
    }),
  );
}

if (kind === "sse" || kind === "sse-single") {
  const client = createClient({
    url,
    headers: resumeHeaders, // called on every attempt
    singleConnection: kind === "sse-single",
    retryAttempts: Infinity,
    retryWait: () => new Promise((resolve) => setTimeout(resolve, 300)),
  });
  client.subscribe({ query: EVENTS, variables: { notes } }, { next: print, error: failed, complete: () => {} });
  if (kind === "sse-single" && process.env.OPEN_NOTE) {
    // Over the reservation's stream, a mutation runs on that stream's session: no sessionId needed.
    setTimeout(() => {
      client.subscribe(
        { query: `mutation { openNote(noteId: "${process.env.OPEN_NOTE}") { id } }` },
        { next: (r) => print(r), error: failed, complete: () => console.log(JSON.stringify({ opened: true })) },
      );
    }, 500);
  }
} else if (kind === "apollo") {
  // RetryLink re-runs a subscription whose stream broke; SetContextLink gives each attempt the
  // cursors kept so far.
  const link = ApolloLink.from([
    new RetryLink({ delay: { initial: 300, max: 2000 }, attempts: { max: Infinity } }),
    new SetContextLink(() => ({ headers: resumeHeaders() })),
    new HttpLink({ uri: url }),
  ]);
  const client = new ApolloClient({ link, cache: new InMemoryCache() });
  client.subscribe({ query: gql(EVENTS), variables: { notes }, fetchPolicy: "no-cache" }).subscribe({
    // Apollo Client 4 hands GraphQL errors over as `error` (CombinedGraphQLErrors).
    next: (result) => print(result.error ? { errors: result.error.errors || [{ message: String(result.error) }] } : result),
    error: (error) => {
      const found = (error.errors || [])[0];
      console.log(JSON.stringify({ error: String(error), code: found && found.extensions && found.extensions.code }));
    },
  });
} else if (kind === "urql-sse") {
  const sse = createClient({
    url,
    headers: resumeHeaders,
    retryAttempts: Infinity,
    retryWait: () => new Promise((resolve) => setTimeout(resolve, 300)),
  });
  const client = new Client({
    url,
    exchanges: [
      fetchExchange,
      subscriptionExchange({
        forwardSubscription: (request) => ({
          subscribe: (sink) => ({ unsubscribe: sse.subscribe({ ...request, query: request.query || "" }, sink) }),
        }),
      }),
    ],
  });
  followUrql(client);
} else if (kind === "urql") {
  const client = new Client({ url, exchanges: [fetchExchange], fetchSubscriptions: true, fetchOptions: { headers } });
  followUrql(client);
} else {
  throw new Error(`unknown KIND ${kind}`);
}
console.log(JSON.stringify({ started: kind }));
