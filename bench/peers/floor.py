"""The floor: Redis pub/sub relayed to sockets by websockets.broadcast of one pre-encoded frame.

No GraphQL, no groups beyond one channel, no per-socket queue: how fast this machine can go.
"""

import argparse
import asyncio

import redis.asyncio as aioredis
from websockets.asyncio.server import broadcast, serve

CLIENTS: set = set()


async def handler(ws) -> None:
    CLIENTS.add(ws)
    try:
        await ws.wait_closed()
    finally:
        CLIENTS.discard(ws)


async def relay(url: str, channel: str) -> None:
    client = aioredis.Redis.from_url(url)
    pubsub = client.pubsub()
    await pubsub.subscribe(channel)
    async for message in pubsub.listen():
        if message["type"] == "message":
            broadcast(CLIENTS, message["data"].decode())


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis", required=True)
    parser.add_argument("--channel", default="floor:all")
    args = parser.parse_args()
    async with serve(handler, "127.0.0.1", args.port, compression=None, max_queue=None):
        await relay(args.redis, args.channel)


if __name__ == "__main__":
    asyncio.run(main())
