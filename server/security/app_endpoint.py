"""Asking the app over HTTP (its connect and permission endpoints, Centrifugo's proxy model).

Every failure to get an answer (timeout, refused connection, a 5xx, a body that is not JSON) is
`Unavailable`: the app being down refuses, never admits, and is never an internal error of ours.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
import orjson

from switchboard.exceptions import Unavailable

log = logging.getLogger(__name__)

KEY_HEADER = "X-Switchboard-Key"
"""Sent with SWITCHBOARD_HOOK_KEY on every request, so the app can tell Switchboard's from others'."""


class AppEndpoint:
    """One URL of the app, POSTed JSON; one pooled client per process."""

    def __init__(self, url: str, timeout: float, key: str | None = None) -> None:
        self.url = url
        self._timeout = timeout
        self._key = key
        self._client: httpx.AsyncClient | None = None

    async def post(self, body: dict[str, Any], headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """(status, parsed JSON body or None) for 2xx and 4xx answers; Unavailable otherwise."""
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout, follow_redirects=False)
        sent = {"content-type": "application/json", **(headers or {})}
        if self._key:
            sent[KEY_HEADER] = self._key
        try:
            reply = await self._client.post(self.url, content=orjson.dumps(body), headers=sent)
        except httpx.TimeoutException:
            raise Unavailable(f"the app did not answer {self.url} within {self._timeout} s") from None
        except httpx.HTTPError as exc:
            raise Unavailable(f"the app could not be reached at {self.url}: {type(exc).__name__}") from None
        if reply.status_code >= 500 or reply.status_code < 200 or 300 <= reply.status_code < 400:
            raise Unavailable(f"the app answered {reply.status_code} at {self.url}")
        try:
            parsed = orjson.loads(reply.content) if reply.content else None
        except orjson.JSONDecodeError:
            if reply.status_code < 300:
                raise Unavailable(f"the app's answer at {self.url} is not JSON") from None
            parsed = None
        return reply.status_code, parsed

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
