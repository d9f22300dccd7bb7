"""Many real readers in a process of their own: `python -m tests.support.readers URL N GROUP COUNT`.

Opens N graphql-transport-ws connections (the `websockets` client, offering deflate as browsers
do), each subscribed to `events(groups: [GROUP])` with the DataEvent payload, prints READY, and
once every reader has received COUNT data events (or 60 s passed) prints one JSON line:
{"done": readers that got COUNT, "received": events in all}.
"""

from __future__ import annotations

import asyncio
import json
import sys

import websockets

from switchboard.security.auth import mint_token
from tests.support.processes import TEST_SECRET

QUERY = "subscription($g: [String!]) { events(groups: $g) { __typename ... on DataEvent { payload } } }"


async def reader(
    url: str, group: str, count: int, subscribed: asyncio.Event, ready: list[int], user: str
) -> int:
    token = mint_token(TEST_SECRET, user)  # a user each: operation limits are per user
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"], max_size=None) as ws:
        await ws.send(
            json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
        )
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        subscribe = {"id": "1", "type": "subscribe", "payload": {"query": QUERY, "variables": {"g": [group]}}}
        await ws.send(json.dumps(subscribe))
        ready[0] += 1
        await subscribed.wait()
        got = 0
        while got < count:
            message = json.loads(await ws.recv())
            if message["type"] == "ping":
                await ws.send('{"type":"pong"}')
            elif message["type"] != "next":
                raise RuntimeError(f"reader got {str(message)[:200]}")
            elif (
                message["type"] == "next"
                and message["payload"]["data"]["events"]["__typename"] == "DataEvent"
            ):
                got += 1
        return got


async def main(url: str, n: int, group: str, count: int) -> None:
    subscribed, ready = asyncio.Event(), [0]
    tasks = [
        asyncio.create_task(reader(url, group, count, subscribed, ready, f"reader{i}")) for i in range(n)
    ]
    while ready[0] < n:
        if any(t.done() for t in tasks):
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # the last subscribes reach their groups
    subscribed.set()
    print("READY", flush=True)
    done, _ = await asyncio.wait(tasks, timeout=60)
    finished = [t.result() for t in done if not t.exception()]
    failures = {repr(t.exception())[:200] for t in done if t.exception()}
    for failure in sorted(failures)[:5]:
        print(f"reader failed: {failure}", file=sys.stderr, flush=True)
    for task in tasks:
        task.cancel()
    print(
        json.dumps({"done": sum(1 for got in finished if got == count), "received": sum(finished)}),
        flush=True,
    )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])))
