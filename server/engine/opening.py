"""Opening a connection's session: the groups it joins on connect (who the client is, is
services.authenticator's: security/hooks.py)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from switchboard.exceptions import Unauthenticated
from switchboard.observability.logs import current_session
from switchboard.security.auth import User
from switchboard.services import Services
from switchboard.sessions.session import Session

log = logging.getLogger(__name__)


async def open_session(
    services: Services,
    user: User | None,
    closer: Callable[[int, str], Coroutine[Any, Any, None]],
    still_open: Callable[[], bool],
) -> Session:
    """A session in `all` and `user_<id>`, registered in the directory; left again if the peer
    went away meanwhile (`still_open`) or anything failed."""
    settings = services.settings
    session = Session(
        services.layer,
        user,
        handlers=services.handlers,
        queue_size=settings.queue_size,
        closer=closer,
        max_notes=settings.max_notes,
        observer=services.presence,
        counters=services.stats,
    )
    try:
        await session.connect(allow_anonymous=settings.allow_anonymous)
    except BaseException:
        await session.disconnect()
        raise
    if not still_open():  # the peer left while we joined its groups
        await session.disconnect()
        raise Unauthenticated("connection closed during initialisation")
    try:
        await services.control.connected(session)
    except BaseException:
        await session.disconnect()
        raise
    current_session.set(session.id)  # every log line of this connection's task carries it
    if user is None:
        log.info("session %s connected anonymously (development mode)", session.id)
    return session
