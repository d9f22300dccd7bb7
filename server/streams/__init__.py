"""Subscriptions over plain HTTP, for where WebSockets cannot go: GraphQL over Server-Sent Events
(both modes of the graphql-sse protocol) and Apollo's multipart subscriptions.

Each stream (or single-connection reservation) is a session like a WebSocket connection's, and
its subscriptions are the same multiplexed listeners (ws/subscription.py): events are rendered
once per distinct document for every transport.
"""
