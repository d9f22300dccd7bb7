"""A note policy for tests: `secret*` notes are refused, `explode` raises, the rest are open."""

from __future__ import annotations

import asyncio

from switchboard.security.auth import User


async def can_open_note(user: User, note_id: str) -> bool:
    await asyncio.sleep(0)  # policies may be async (a database lookup, say)
    if note_id == "explode":
        raise RuntimeError("the policy's database is on fire (this text must never reach a client)")
    return not note_id.startswith("secret")
