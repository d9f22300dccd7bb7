"""The bystander of the hostile-load benchmarks (stall.py, flood.py): one authenticated socket
subscribed to `all`, and the latency of an event published every 20 ms (through Redis, from
this process, as send_to_group does) while an attacker works on the same server."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from typing import Any

import websockets

from switchboard.security.auth import mint_token
from tests.support.processes import TEST_SECRET

BYSTANDER = 'subscription { events(groups: ["all"]) { __typename ... on DataEvent { payload } } }'


async def ws_session(url: str, user: str) -> Any:
    """A graphql-transport-ws socket, past connection_ack, as `user`."""
    ws = await websockets.connect(url, subprotocols=["graphql-transport-ws"], max_size=None)  # type: ignore[list-item]
    token = mint_token(TEST_SECRET, user)
    await ws.send(json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}))
    assert json.loads(await ws.recv())["type"] == "connection_ack"
    return ws


class Bystander:
    """Subscribed to `all`; measures each event's latency from the time in its payload."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.latencies: list[float] = []
        self.sent = 0
        self._receiver = asyncio.create_task(self._receive())

    @classmethod
    async def open(cls, url: str) -> Bystander:
        ws = await ws_session(url, "bystander")
        await ws.send(json.dumps({"id": "b", "type": "subscribe", "payload": {"query": BYSTANDER}}))
        await asyncio.sleep(0.3)
        return cls(ws)

    async def _receive(self) -> None:
        async for raw in self.ws:
            message = json.loads(raw)
            if message["type"] == "ping":
                await self.ws.send('{"type":"pong"}')
            elif message["type"] == "next":
                event = message["payload"]["data"]["events"]
                if event["__typename"] == "DataEvent" and "t" in event["payload"]:
                    self.latencies.append(time.time() - event["payload"]["t"])

    async def publish(self, seconds: float) -> None:
        """An event every 20 ms for `seconds`."""
        from switchboard.publish import send_to_group

        end = time.monotonic() + seconds
        while time.monotonic() < end:
            await send_to_group("all", "data", payload={"t": time.time()})
            self.sent += 1
            await asyncio.sleep(0.02)

    async def close(self, settle: float) -> None:
        """Stop after `settle` seconds more (the last events' time to arrive)."""
        await asyncio.sleep(settle)
        self._receiver.cancel()
        await self.ws.close()

    def figures(self) -> dict[str, Any]:
        """Sent, received, and p50 / p99 / max latency in ms."""
        ms = sorted(x * 1000 for x in self.latencies)
        return {
            "sent": self.sent,
            "received": len(ms),
            "p50_ms": round(statistics.median(ms), 1) if ms else None,
            "p99_ms": round(ms[int(0.99 * (len(ms) - 1))], 1) if ms else None,
            "max_ms": round(ms[-1], 1) if ms else None,
        }
