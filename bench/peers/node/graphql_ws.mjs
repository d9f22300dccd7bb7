// graphql-ws on ws with graphql-redis-subscriptions: the GraphQL stack a JS team picks. The app
// publishes with a plain Redis PUBLISH of the event's JSON on --channel (what RedisPubSub.publish
// sends); every subscription `subscription { data { payload } }` gets it.
//
//   node graphql_ws.mjs --port 8000 --redis redis://127.0.0.1:6379/0 [--channel graphqlws:all]
import { parseArgs } from "node:util";
import { WebSocketServer } from "ws";
import { useServer } from "graphql-ws/use/ws";
import { GraphQLObjectType, GraphQLScalarType, GraphQLSchema, GraphQLString } from "graphql";
import { RedisPubSub } from "graphql-redis-subscriptions";
import Redis from "ioredis";

const { values: a } = parseArgs({
  options: {
    port: { type: "string" },
    redis: { type: "string" },
    channel: { type: "string", default: "graphqlws:all" },
  },
});
const pubsub = new RedisPubSub({ publisher: new Redis(a.redis), subscriber: new Redis(a.redis) });
const JSONScalar = new GraphQLScalarType({ name: "JSON", serialize: (value) => value });
const DataEvent = new GraphQLObjectType({ name: "DataEvent", fields: { payload: { type: JSONScalar } } });
const schema = new GraphQLSchema({
  query: new GraphQLObjectType({ name: "Query", fields: { ok: { type: GraphQLString, resolve: () => "ok" } } }),
  subscription: new GraphQLObjectType({
    name: "Subscription",
    fields: {
      data: {
        type: DataEvent,
        subscribe: () => pubsub.asyncIterableIterator(a.channel),
        resolve: (payload) => ({ payload }),
      },
    },
  }),
});
// ws declines permessage-deflate unless told otherwise (as Switchboard does by default).
const wss = new WebSocketServer({ port: Number(a.port), host: "127.0.0.1", path: "/graphql" });
useServer({ schema }, wss);
