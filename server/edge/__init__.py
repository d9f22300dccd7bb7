"""Switchboard's own listener (`switchboard serve`): WebSocket upgrades run on a protocol of the
project's own, which frames an event once and writes it to many sockets; every other connection
is handed, unread, to hypercorn. docs/performance.md says why."""
