"""`switchboard serve --workers 2` with no Redis: the local hub in the serving process carries
groups, history, sessions and presence between the workers, so every subscriber on either worker
gets every event, and a client resumes on any worker."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from redis.exceptions import AuthenticationError

from switchboard.layers import RedisLayer
from switchboard.layers.local_hub import LocalHub
from switchboard.messages.envelope import Envelope
from tests.conftest import token, unique
from tests.support.client import WsClient, http
from tests.support.processes import ServerProcess
from tests.test_operations import settled_workers

NOTIFY = "mutation($g: String!, $m: String!) { sendNotify(group: $g, message: $m) { id } }"
PRESENCE = "query($g: String!) { presence(group: $g) { sessions } }"
SESSIONS = "{ sessions { id } }"


async def test_two_workers_without_redis_deliver_everything_everywhere() -> None:
    server = ServerProcess(workers=2)
    server.env.pop("REDIS_URL", None)  # no Redis at all
    server.start()
    assert "local hub on 127.0.0.1:" in server.log_tail()
    user, note = unique("u"), unique("n")
    clients: list[WsClient] = []
    try:
        per_worker: dict[str, float] = {}
        async with asyncio.timeout(30):  # the kernel picks each connection's worker
            while len(clients) < 40 and not (len(per_worker) == 2 and all(per_worker.values())):
                client = WsClient(server.ws_url, token(user))
                await client.__aenter__()
                await client.execute("mutation($n: ID!) { openNote(noteId: $n) { id } }", n=note)
                clients.append(client)
                per_worker = await settled_workers(server, len(clients))
        assert len(per_worker) == 2 and all(per_worker.values()), per_worker
        subs = [await c.events([f"note_{note}", f"user_{user}"]) for c in clients]
        publisher = token("svc", publisher=True)
        for group in (f"note_{note}", f"user_{user}"):
            await http(server.http_url, NOTIFY, publisher, g=group, m=f"to {group}")
            for sub in subs:
                event = (await sub.next())["events"]
                assert (event["group"], event["message"]) == (group, f"to {group}")
        # Sessions and presence span both workers, whichever one answers.
        for _ in range(3):
            sessions = await http(server.http_url, SESSIONS, token(user))
            assert len(sessions["data"]["sessions"]) == len(clients)
            present = await http(server.http_url, PRESENCE, publisher, g=f"note_{note}")
            assert present["data"]["presence"]["sessions"] == len(clients)
    finally:
        for client in clients:
            await client.__aexit__(None, None, None)
        assert server.stop() == 0, server.log_tail()


async def test_the_redis_layer_runs_unchanged_on_the_hub() -> None:
    """Groups across two layers, offsets and replay from the history, as on Redis."""
    hub = LocalHub().start()
    first, second = RedisLayer(hub.url, "p", history_size=10), RedisLayer(hub.url, "p", history_size=10)
    try:
        await first.start()
        await second.start()
        got: list[Envelope] = []
        three = asyncio.Event()

        def receive(envelope: Envelope) -> None:
            got.append(envelope)
            if len(got) == 3:
                three.set()

        await first.group_add("g", receive)
        for n in range(3):
            await second.group_send("g", Envelope(type="data", group="g", fields={"payload": n}))
        await asyncio.wait_for(three.wait(), 5)
        assert [e.fields["payload"] for e in got] == [0, 1, 2]
        assert [e.offset for e in got] == [1, 2, 3]
        recovery = await second.history_since("g", got[0].cursor or "")
        assert recovery.recovered and [e.fields["payload"] for e in recovery.events] == [1, 2]
        await first.group_discard("g", receive)
        await second.group_send("g", Envelope(type="data", group="g", fields={"payload": 9}))
        await asyncio.sleep(0.1)
        assert len(got) == 3
        assert first.subscribed_groups() == frozenset()
    finally:
        await first.close()
        await second.close()
        hub.stop()


async def test_the_hub_answers_only_with_its_password() -> None:
    hub = LocalHub(password="s3cret").start()
    try:
        stranger = aioredis.Redis.from_url(f"redis://127.0.0.1:{hub.port}/0?protocol=2")
        with pytest.raises(AuthenticationError):  # redis-py's name for NOAUTH
            await stranger.publish("switchboard:group:all", b"x")
        await stranger.aclose()
        wrong = aioredis.Redis.from_url(f"redis://:nope@127.0.0.1:{hub.port}/0?protocol=2")
        with pytest.raises(AuthenticationError):  # WRONGPASS
            await wrong.ping()
        await wrong.aclose()
        assert "s3cret" in hub.url
        right = aioredis.Redis.from_url(hub.url)
        assert await right.ping() is True
        await right.aclose()
    finally:
        hub.stop()
