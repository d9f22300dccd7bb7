"""What the history costs in Redis: used_memory per group and per retained event.

  python bench/history_cost.py [--groups 1000] [--events 100] [--size 100]
Publishes `events` notify events of about 200 bytes to each of `groups` groups through the Redis
layer with a history of `size` events, and reports Redis' used_memory growth.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis.asyncio as aioredis  # noqa: E402

from switchboard.layers.redis import RedisLayer  # noqa: E402
from switchboard.messages.events import build_envelope  # noqa: E402
from tests.support.processes import RedisServer  # noqa: E402


async def measure(groups: int, events: int, size: int) -> dict[str, float]:
    server = RedisServer().start()
    client = aioredis.Redis.from_url(server.url)
    layer = RedisLayer(server.url, "cost", history_size=size, history_ttl=3600)
    try:
        before = (await client.info("memory"))["used_memory"]
        for g in range(groups):
            group = f"note_{g}"
            for e in range(events):
                await layer.group_send(
                    group, build_envelope(group, "notify", {"message": "x" * 150, "seq": e})
                )
        after = (await client.info("memory"))["used_memory"]
        retained = groups * min(events, size)
        sample = build_envelope("note_0", "notify", {"message": "x" * 150, "seq": 0}).encode()
        return {
            "groups": groups,
            "events_per_group": events,
            "history_size": size,
            "event_bytes": len(sample),
            "used_memory_growth_bytes": after - before,
            "bytes_per_group": (after - before) / groups,
            "bytes_per_retained_event": (after - before) / retained,
        }
    finally:
        await layer.close()
        await client.aclose()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--groups", type=int, default=1000)
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--size", type=int, default=100)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.groups, args.events, args.size)), indent=2))


if __name__ == "__main__":
    main()
