"""Looking into a real Redis from tests."""

from __future__ import annotations

import redis.asyncio as aioredis


async def numsub(url: str, channel: str) -> int:
    """How many connections are subscribed to `channel` (PUBSUB NUMSUB)."""
    client = aioredis.Redis.from_url(url)
    try:
        ((_, count),) = await client.pubsub_numsub(channel)
        return int(count)
    finally:
        await client.aclose()
