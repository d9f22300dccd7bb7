"""Thousands of connect / subscribe / openNote / closeNote / disconnect cycles across two
processes while events flow: no memory growth, no stray Redis subscription, no leftover task,
and the sessions that stayed connected received every event."""

from __future__ import annotations

import asyncio
import random

import httpx
import orjson
import pytest
import redis.asyncio as aioredis
import websockets
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import token, unique
from tests.support.client import WsClient, http
from tests.support.processes import ServerProcess

WARMUP_CYCLES = 1000
CYCLES = 2000
CONCURRENCY = 20
NOTIFY = "mutation($g: String!, $m: String!) { sendNotify(group: $g, message: $m) { id } }"


async def metrics(server: ServerProcess) -> dict[str, float]:
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{server.base_url}/metrics")).text
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples if not s.labels}


async def settled(server: ServerProcess, connections: int = 1) -> dict[str, float]:
    """Metrics once only the stayers are connected and the task count has stopped moving."""
    history: list[dict[str, float]] = []
    for _ in range(150):
        history.append(await metrics(server))
        recent = history[-6:]
        if (
            len(recent) == 6
            and all(m["switchboard_connections"] == connections for m in recent)
            and len({m["switchboard_own_tasks"] for m in recent}) == 1
        ):
            return recent[-1]
        await asyncio.sleep(0.2)
    raise AssertionError(f"server never settled: {history[-1]}")


async def cycle(server: ServerProcess, rng: random.Random, notes: list[str]) -> None:
    """One client's whole life, sometimes leaving notes open for disconnect to clean up."""
    user = f"churn{rng.randrange(50)}"
    async with websockets.connect(server.ws_url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]

        async def send(message: dict[str, object]) -> None:
            await ws.send(orjson.dumps(message).decode())

        async def until(kind: str, op_id: str | None = None) -> None:
            while True:
                message = orjson.loads(await ws.recv())
                if message["type"] == kind and (op_id is None or message.get("id") == op_id):
                    return

        await send({"type": "connection_init", "payload": {"authorization": f"Bearer {token(user)}"}})
        await until("connection_ack")
        await send(
            {"type": "subscribe", "id": "s", "payload": {"query": "subscription { events { __typename } }"}}
        )
        opened = rng.sample(notes, rng.randrange(1, 4))
        for i, note in enumerate(opened):
            query = f'mutation {{ openNote(noteId: "{note}") {{ id }} }}'
            await send({"type": "subscribe", "id": f"o{i}", "payload": {"query": query}})
            await until("complete", f"o{i}")
        if rng.random() < 0.5:
            query = f'mutation {{ closeNote(noteId: "{opened[0]}") {{ id }} }}'
            await send({"type": "subscribe", "id": "c", "payload": {"query": query}})
            await until("complete", "c")
        if rng.random() < 0.3:
            await send({"type": "complete", "id": "s"})


async def churn(servers: list[ServerProcess], cycles: int, notes: list[str], seed: int) -> None:
    rng = random.Random(seed)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(cycles):
        queue.put_nowait(i)

    async def worker() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            await cycle(servers[i % len(servers)], rng, notes)

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


@pytest.mark.timeout(180)  # 3000 cycles: about 60-70 s on a 2-core machine, over the 60 s default
async def test_churn_leaves_nothing_behind(redis_url: str) -> None:
    prefix = unique("churn")
    env = {"REDIS_URL": redis_url, "SWITCHBOARD_PREFIX": prefix, "SWITCHBOARD_MUTATION_RATE": "1000"}
    servers = [ServerProcess(env).start(), ServerProcess(env).start()]
    notes = [f"c{i}" for i in range(40)]
    redis = aioredis.Redis.from_url(redis_url)
    try:
        stayers = [WsClient(s.ws_url, token(unique("stay"))) for s in servers]
        for client in stayers:
            await client.__aenter__()
        streams = [await c.events() for c in stayers]
        sent: list[str] = []
        stop = asyncio.Event()

        async def publish() -> None:
            n = 0
            while not stop.is_set():
                body = await http(
                    servers[n % 2].http_url, NOTIFY, token("p", publisher=True), g="all", m=str(n)
                )
                sent.append(body["data"]["sendNotify"]["id"])
                n += 1
                await asyncio.sleep(0.02)

        publisher = asyncio.create_task(publish())
        await churn(servers, WARMUP_CYCLES, notes, seed=1)
        stop.set()
        await publisher
        before = [await settled(s) for s in servers]
        stop.clear()
        publisher = asyncio.create_task(publish())
        await churn(servers, CYCLES, notes, seed=2)
        stop.set()
        await publisher
        after = [await settled(s) for s in servers]

        for b, a in zip(before, after, strict=True):
            assert a["switchboard_connections"] == 1 and a["switchboard_sessions"] == 1
            # Every task Switchboard starts is named switchboard-*: after 2000 cycles, as many as before.
            assert a["switchboard_own_tasks"] == b["switchboard_own_tasks"], (b, a)
            # hypercorn keeps idle connections a few seconds; a leak would grow with the cycles.
            assert a["switchboard_asyncio_tasks"] < b["switchboard_asyncio_tasks"] + 100, (b, a)
            rss_before, rss_after = b["process_resident_memory_bytes"], a["process_resident_memory_bytes"]
            print(f"RSS {rss_before / 2**20:.1f} -> {rss_after / 2**20:.1f} MiB")
            assert rss_after / rss_before < 1.10, f"RSS grew by {100 * (rss_after / rss_before - 1):.1f}%"
        channels = {c.decode() for c in await redis.pubsub_channels(f"{prefix}:group:*")}
        assert not any(ch.startswith(f"{prefix}:group:note_") for ch in channels), channels
        assert not any(":group:user_churn" in ch for ch in channels), channels
        assert f"{prefix}:group:all" in channels
        for stream in streams:
            got = [(await stream.next())["events"]["id"] for _ in sent]
            assert got == sent
            await stream.nothing_within(0.2)
        for client in stayers:
            await client.__aexit__(None, None, None)
    finally:
        await redis.aclose()
        for server in servers:
            server.stop()


PRESENCE_EVENTS = """subscription($g: [String!]) { events(groups: $g) {
  __typename ... on PresenceEvent { kind sessionId } } }"""


async def subscribe_and_leave(server: ServerProcess, rng: random.Random, note: str) -> None:
    """Subscribe with a declared note, then stop it or hang up at once: often while the note is
    still being joined."""
    async with websockets.connect(server.ws_url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        init = {"type": "connection_init", "payload": {"authorization": f"Bearer {token('hasty')}"}}
        await ws.send(orjson.dumps(init).decode())
        while orjson.loads(await ws.recv())["type"] != "connection_ack":
            pass
        query = "subscription($n: [ID!]) { events(notes: $n) { __typename } }"
        for i in range(rng.randrange(1, 4)):
            payload = {"query": query, "variables": {"n": [note]}}
            await ws.send(orjson.dumps({"type": "subscribe", "id": str(i), "payload": payload}).decode())
            if rng.random() < 0.7:
                await ws.send(orjson.dumps({"type": "complete", "id": str(i)}).decode())
        if rng.random() < 0.5:
            await asyncio.sleep(rng.random() * 0.01)


@pytest.mark.timeout(120)
async def test_hasty_subscriptions_with_notes_leave_no_channel_and_pair_every_join(redis_url: str) -> None:
    """Subscriptions that declare a note and are stopped (or whose socket closes) while it is
    joined: afterwards no note channel stays subscribed in Redis, every session left presence,
    and a watcher saw each session's JOINs and LEAVEs alternate, ending with a LEAVE."""
    prefix = unique("hasty")
    env = {"REDIS_URL": redis_url, "SWITCHBOARD_PREFIX": prefix, "SWITCHBOARD_MUTATION_RATE": "1000"}
    servers = [ServerProcess(env).start(), ServerProcess(env).start()]
    notes = [f"h{i}" for i in range(5)]
    redis = aioredis.Redis.from_url(redis_url)
    rng = random.Random(3)
    try:
        async with WsClient(servers[0].ws_url, token(unique("watch"))) as watcher:
            for note in notes:
                await watcher.execute("mutation($n: ID!) { openNote(noteId: $n) { id } }", n=note)
            events = await watcher.subscribe(PRESENCE_EVENTS, g=[f"note_{n}" for n in notes])
            queue: asyncio.Queue[int] = asyncio.Queue()
            for i in range(600):
                queue.put_nowait(i)

            async def worker() -> None:
                while not queue.empty():
                    i = queue.get_nowait()
                    await subscribe_and_leave(servers[i % 2], rng, notes[i % len(notes)])

            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
            await asyncio.gather(settled(servers[0], 1), settled(servers[1], 0))
            await asyncio.sleep(1.0)  # the last LEAVEs, and any resync, land
            kinds: dict[str, list[str]] = {}
            while True:
                try:
                    event = (await asyncio.wait_for(events.results.get(), 0.5))["events"]
                except TimeoutError:
                    break
                kinds.setdefault(event["sessionId"], []).append(event["kind"])
            paired = ["JOIN", "LEAVE"]  # a session may join a note, leave it, and join it again
            unpaired = {sid: k for sid, k in kinds.items() if k != paired * (len(k) // 2) or len(k) % 2}
            assert not unpaired, f"{len(unpaired)} of {len(kinds)} sessions: {list(unpaired.items())[:5]}"
            channels = {c.decode() for c in await redis.pubsub_channels(f"{prefix}:group:note_*")}
            assert channels == {f"{prefix}:group:note_{n}" for n in notes}  # the watcher's only
            for note in notes:
                members = await redis.hgetall(f"{prefix}:presence:note_{note}")
                assert len(members) == 1, members  # the watcher
        await asyncio.sleep(0.5)
        channels = {c.decode() for c in await redis.pubsub_channels(f"{prefix}:group:note_*")}
        assert not channels, channels
    finally:
        await redis.aclose()
        for server in servers:
            server.stop()
