"""Import-path authentication hooks for tests: the user is the `session` cookie's value."""

from __future__ import annotations

import asyncio

from switchboard.exceptions import Unauthenticated
from switchboard.security.auth import User
from switchboard.security.handshake import Handshake


async def from_cookie(handshake: Handshake) -> User | None:
    await asyncio.sleep(0)  # hooks may be async (a session store lookup, say)
    session = handshake.cookies.get("session")
    if session is None:
        return None
    if session == "intruder":
        raise Unauthenticated("that session is not valid")
    if session == "broken":
        raise RuntimeError("the session store is down (this text must never reach a client)")
    return User(id=session)
