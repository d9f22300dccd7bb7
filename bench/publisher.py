"""Publishes M events at R per second to one group, from its own process, through each system's
own publishing API. Every event carries `seq` and the publish time `t`; the load generator
measures latency against `t`. --probe sends seq -1 every 0.2 s until stdin closes.

  switchboard: switchboard.publish.send_to_group (needs REDIS_URL, SWITCHBOARD_PREFIX)
  channels:    channels_redis group_send with type send_notify (needs the reference virtualenv)
  floor:       plain Redis PUBLISH
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

PAD = "x" * 120  # every system carries the same payload; ~200 bytes of event


async def sender(kind: str, group: str):
    if kind == "switchboard":
        from switchboard.publish import send_to_group

        async def send(payload: dict) -> None:
            await send_to_group(group, "data", payload=payload)

        return send
    if kind == "channels":
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.peers.channels_peer.settings")
        import django

        django.setup()
        from channels.layers import get_channel_layer

        layer = get_channel_layer()

        async def send(payload: dict) -> None:
            await layer.group_send(group, {"type": "send_notify", "data": payload})

        return send
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(os.environ["REDIS_URL"])

    async def send(payload: dict) -> None:
        await client.publish(group, json.dumps(payload, separators=(",", ":")))

    return send


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kind", required=True, choices=["switchboard", "channels", "floor"])
    parser.add_argument("--group", default="all")
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--probe", action="store_true")
    args = parser.parse_args()
    send = await sender(args.kind, args.group)
    if args.probe:
        reader = asyncio.StreamReader()
        await asyncio.get_running_loop().connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
        )
        while not reader.at_eof():
            await send({"seq": -1, "t": time.time(), "pad": PAD})
            try:
                await asyncio.wait_for(reader.read(1), 0.2)
            except TimeoutError:
                pass
        return
    start = time.perf_counter()
    late = 0
    for seq in range(args.events):
        target = start + seq / args.rate
        delay = target - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            late += 1
        await send({"seq": seq, "t": time.time(), "pad": PAD})
    spent = time.perf_counter() - start
    print(json.dumps({"published": args.events, "seconds": spent, "rate": args.events / spent, "late": late}))


if __name__ == "__main__":
    asyncio.run(main())
