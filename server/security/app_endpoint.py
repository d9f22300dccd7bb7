"""Asking the app over HTTP (its connect and permission endpoints, Centrifugo's proxy model).

Every failure to get an answer (timeout, refused connection, a 5xx, a body that is not JSON, an
answer past the size limit, too many requests already waiting) is `Unavailable`: the app being
down or slow refuses, never admits, and is never an internal error of ours.

The client is bounded and heals itself: at most `concurrency` requests are sent at once (the
pool holds as many connections, so httpx never waits for one: its pool timeouts left
connections that never connected, and logins failed for good after a flood), at most `queue`
more wait for a turn and a request beyond that is refused at once; the timeout covers the wait
and the request together, so a flood against a slow app drains within one timeout of its end.
An answer is read up to `max_bytes` and no further.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import orjson

from switchboard.exceptions import Unavailable
from switchboard.settings import Settings

log = logging.getLogger(__name__)

KEY_HEADER = "X-Switchboard-Key"
"""Sent with SWITCHBOARD_HOOK_KEY on every request, so the app can tell Switchboard's from others'."""
MAX_ANSWER_BYTES = 64 * 1024
"""An answer is {"user", "roles", "expires_in"} or {"allowed"}: a few hundred bytes."""


class AppEndpoint:
    """One URL of the app, POSTed JSON; one bounded, pooled client per process."""

    def __init__(
        self,
        url: str,
        timeout: float,
        key: str | None = None,
        *,
        concurrency: int = 32,
        queue: int = 256,
        max_bytes: int = MAX_ANSWER_BYTES,
    ) -> None:
        self.url = url
        self._timeout = timeout
        self._key = key
        self._concurrency = concurrency
        self._queue = queue
        self._max_bytes = max_bytes
        self._slots = asyncio.Semaphore(concurrency)
        self._waiting = 0  # requests waiting for a slot
        self._client: httpx.AsyncClient | None = None

    @classmethod
    def from_settings(cls, url: str, settings: Settings) -> AppEndpoint:
        return cls(
            url,
            settings.hook_timeout,
            settings.hook_key,
            concurrency=settings.hook_concurrency,
            queue=settings.hook_queue,
        )

    @property
    def is_open(self) -> bool:
        """Whether a client (and its pooled connections) is held."""
        return self._client is not None

    async def post(self, body: dict[str, Any], headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """(status, parsed JSON body or None) for 2xx and 4xx answers; Unavailable otherwise."""
        if self._waiting >= self._queue:
            raise Unavailable(f"the app is busy at {self.url}: {self._waiting} requests waiting")
        sent = {"content-type": "application/json", "accept-encoding": "identity", **(headers or {})}
        if self._key:
            sent[KEY_HEADER] = self._key
        try:
            async with asyncio.timeout(self._timeout):
                self._waiting += 1
                try:
                    await self._slots.acquire()
                finally:
                    self._waiting -= 1
                try:
                    return await self._send(orjson.dumps(body), sent)
                finally:
                    self._slots.release()
        except TimeoutError:
            raise Unavailable(f"the app did not answer {self.url} within {self._timeout} s") from None

    async def _send(self, content: bytes, headers: dict[str, str]) -> tuple[int, Any]:
        client = self._client
        if client is None:
            limits = httpx.Limits(
                max_connections=self._concurrency, max_keepalive_connections=self._concurrency
            )
            client = self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self._timeout), limits=limits, follow_redirects=False
            )
        try:
            async with client.stream("POST", self.url, content=content, headers=headers) as reply:
                status = reply.status_code
                if status >= 500 or status < 200 or 300 <= status < 400:
                    raise Unavailable(f"the app answered {status} at {self.url}")
                data = await self._read(reply)
        except httpx.PoolTimeout:
            # Never expected (no more requests than connections): start again with a new pool.
            log.warning("the pool for %s timed out: replacing the client", self.url)
            await self._replace(client)
            raise Unavailable(f"the app could not be reached at {self.url}: pool timeout") from None
        except httpx.TimeoutException:
            raise Unavailable(f"the app did not answer {self.url} within {self._timeout} s") from None
        except httpx.HTTPError as exc:
            raise Unavailable(f"the app could not be reached at {self.url}: {type(exc).__name__}") from None
        try:
            parsed = orjson.loads(data) if data else None
        except orjson.JSONDecodeError:
            if status < 300:
                raise Unavailable(f"the app's answer at {self.url} is not JSON") from None
            parsed = None
        return status, parsed

    async def _read(self, reply: httpx.Response) -> bytes:
        declared = reply.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._max_bytes:
            raise Unavailable(f"the app's answer at {self.url} is larger than {self._max_bytes} bytes")
        data = bytearray()
        async for chunk in reply.aiter_raw():
            data += chunk
            if len(data) > self._max_bytes:
                raise Unavailable(f"the app's answer at {self.url} is larger than {self._max_bytes} bytes")
        return bytes(data)

    async def _replace(self, client: httpx.AsyncClient) -> None:
        if self._client is client:
            self._client = None
        await client.aclose()

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
