"""Test clients built on real client libraries: gql over WebSocket, httpx over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx
from gql import Client, gql
from gql.transport.websockets import WebsocketsTransport

from tests.support.processes import ServerProcess, run_python

TRANSPORT_WS = WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL  # "graphql-transport-ws"
LEGACY_WS = WebsocketsTransport.APOLLO_SUBPROTOCOL  # "graphql-ws"
EVENT_TIMEOUT = 5.0

EVENT_FIELDS = """
  __typename
  ... on NotifyEvent { id group message status sentAt }
  ... on DataEvent { id group payload sentAt }
"""


class Subscription:
    """A running subscription whose results are collected in a queue."""

    def __init__(self, client: WsClient, document: str, variables: dict[str, Any]) -> None:
        self.results: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.error: BaseException | None = None
        self._task = asyncio.create_task(self._run(client, document, variables))

    async def _run(self, client: WsClient, document: str, variables: dict[str, Any]) -> None:
        try:
            async for result in client.session.subscribe(gql(document), variable_values=variables):
                await self.results.put(result)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self.error = exc

    async def next(self, timeout: float = EVENT_TIMEOUT) -> dict[str, Any]:  # noqa: ASYNC109
        """The next result; fails the test if none comes in time."""
        try:
            return await asyncio.wait_for(self.results.get(), timeout)
        except TimeoutError:
            raise AssertionError(f"no event within {timeout}s (subscription error: {self.error!r})") from None

    async def nothing_within(self, seconds: float = 0.5) -> None:
        """Assert that no result arrives for a while."""
        try:
            result = await asyncio.wait_for(self.results.get(), seconds)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected event: {result}")

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class WsClient:
    """A gql WebSocket client with one connection, several operations on it."""

    def __init__(self, url: str, token: str | None = None, subprotocol: str = TRANSPORT_WS) -> None:
        payload = {"authorization": f"Bearer {token}"} if token else {}
        # A generous ack timeout: on a loaded two-core CI box the client's own loop can lag.
        self.transport = WebsocketsTransport(
            url=url, init_payload=payload, subprotocols=[subprotocol], ack_timeout=30
        )
        self.client = Client(transport=self.transport, fetch_schema_from_transport=False)
        self.subscriptions: list[Subscription] = []

    async def __aenter__(self) -> WsClient:
        self.session = await self.client.connect_async()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for sub in self.subscriptions:
            await sub.stop()
        await self.client.close_async()

    async def execute(self, document: str, **variables: Any) -> dict[str, Any]:
        return await asyncio.wait_for(
            self.session.execute(gql(document), variable_values=variables), EVENT_TIMEOUT
        )

    async def session_info(self) -> dict[str, Any]:
        result = await self.execute("{ session { id userId groups subscriptionCount } }")
        return result["session"]

    async def subscribe(self, document: str, **variables: Any) -> Subscription:
        """Start a subscription and return once the server has it running."""
        before = (await self.session_info())["subscriptionCount"]
        sub = Subscription(self, document, variables)
        self.subscriptions.append(sub)
        deadline = asyncio.get_running_loop().time() + EVENT_TIMEOUT
        while (await self.session_info())["subscriptionCount"] <= before:
            if sub.error is not None:
                raise AssertionError(f"subscription failed: {sub.error!r}")
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError("subscription did not start in time")
            await asyncio.sleep(0.02)
        return sub

    async def events(self, groups: list[str] | None = None) -> Subscription:
        return await self.subscribe(
            f"subscription($groups: [String!]) {{ events(groups: $groups) {{ {EVENT_FIELDS} }} }}",
            groups=groups,
        )


async def http(url: str, document: str, token: str | None = None, **variables: Any) -> dict[str, Any]:
    """POST one operation; return the whole response body (data and errors)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(timeout=EVENT_TIMEOUT) as client:
        response = await client.post(url, json={"query": document, "variables": variables}, headers=headers)
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


def error_codes(body: dict[str, Any]) -> list[str]:
    return [e.get("extensions", {}).get("code") for e in body.get("errors") or []]


async def padded_events_reach(
    events: Subscription, server: ServerProcess, group: str, count: int, pad: str
) -> None:
    """Publish `count` data events to `group` from another process (`pad`, an expression of `i`,
    their padding), and check that the subscription `events` gets every one, in order."""
    publishing = asyncio.create_task(
        asyncio.to_thread(
            run_python,
            "import time\n"
            "from switchboard.publish import send_to_group_sync as s\n"
            f"for i in range({count}):\n"
            f"    s('{group}', 'data', payload={{'i': i, 'pad': {pad}}})\n"
            "    time.sleep(0.005)",
            {**server.env},
        )
    )
    got: list[int] = []
    while len(got) < count:
        event = (await events.next(10))["events"]
        if event["__typename"] == "DataEvent":
            got.append(event["payload"]["i"])
    await publishing
    assert got == list(range(count))
