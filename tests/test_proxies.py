"""Behind reverse proxies each browser is itself: the client address comes from Forwarded /
X-Forwarded-For only when the peer is a trusted proxy (SWITCHBOARD_TRUSTED_PROXIES). Unit tests
of the rule, then a real nginx (Debian's package, started here) in front of two server
processes on one Redis: per-address limits count each browser, a client cannot pass itself off
as another, the app's connect endpoint is told the browser's address, and events flow through
the proxy on WebSocket and SSE."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import httpx
import pytest
import websockets

from switchboard.security.proxies import TrustedProxies
from tests.conftest import token, unique
from tests.support.app_server import AppServer
from tests.support.nginx import Nginx, nginx_binary
from tests.support.processes import TEST_SECRET, ServerProcess

NOTIFY = 'mutation($m: String!) { sendNotify(group: "user_alice", message: $m) { id } }'
PUBLISHER = token("svc-proxies", publisher=True)


def scope(peer: str, *headers: tuple[str, str]) -> dict[str, object]:
    return {"client": (peer, 5000), "headers": [(k.encode(), v.encode()) for k, v in headers]}


@pytest.mark.parametrize(
    ("trusted", "peer", "headers", "client"),
    [
        (["127.0.0.1"], "127.0.0.1", [("x-forwarded-for", "203.0.113.7")], "203.0.113.7"),
        # What a client sends stands left of what the proxy appends: the rightmost untrusted wins.
        (["127.0.0.1"], "127.0.0.1", [("x-forwarded-for", "198.51.100.1, 203.0.113.7")], "203.0.113.7"),
        (
            ["127.0.0.1", "10.0.0.0/8"],
            "127.0.0.1",
            [("x-forwarded-for", "203.0.113.7, 10.1.2.3")],
            "203.0.113.7",
        ),
        (["127.0.0.1"], "127.0.0.1", [("forwarded", 'for="[2001:db8::1]:4711";proto=https')], "2001:db8::1"),
        (
            ["127.0.0.1"],
            "127.0.0.1",
            [("forwarded", "for=203.0.113.9"), ("x-forwarded-for", "1.1.1.1")],
            "203.0.113.9",
        ),
        (["127.0.0.1"], "192.0.2.50", [("x-forwarded-for", "203.0.113.7")], None),  # not a proxy of ours
        ([], "127.0.0.1", [("x-forwarded-for", "203.0.113.7")], None),  # no proxy trusted
        (["*"], "192.0.2.50", [("x-forwarded-for", "203.0.113.7")], "203.0.113.7"),
        (["127.0.0.1"], "127.0.0.1", [], None),  # a trusted peer that names nobody
        (["127.0.0.1"], "127.0.0.1", [("x-forwarded-for", "127.0.0.1")], "127.0.0.1"),  # all trusted
    ],
)
def test_the_client_is_the_rightmost_address_no_trusted_proxy_added(
    trusted: list[str], peer: str, headers: list[tuple[str, str]], client: str | None
) -> None:
    assert TrustedProxies(trusted).client_of(scope(peer, *headers)) == client


pytestmark_nginx = pytest.mark.skipif(nginx_binary() is None, reason="nginx not installed (make nginx)")


@pytest.fixture(scope="module")
def app() -> Iterator[AppServer]:
    server = AppServer().start()
    server.sessions["cookie-a"] = "alice"
    yield server
    server.stop()


@pytest.fixture(scope="module")
def behind_nginx(redis_url: str, app: AppServer) -> Iterator[tuple[Nginx, list[ServerProcess]]]:
    env = {
        "REDIS_URL": redis_url,
        "SWITCHBOARD_PREFIX": unique("px"),
        "SWITCHBOARD_MODE": "prod",
        "SWITCHBOARD_SECRET": TEST_SECRET,
        "SWITCHBOARD_ALLOWED_ORIGINS": "https://app.example",
        "SWITCHBOARD_TRUSTED_PROXIES": "127.0.0.1",
        "SWITCHBOARD_HTTP_RATE": "0.1",
        "SWITCHBOARD_HTTP_BURST": "4",
        "SWITCHBOARD_CONNECT_URL": f"{app.url}/connect",
    }
    servers = [ServerProcess(env).start(), ServerProcess(env).start()]
    proxy = Nginx([s.port for s in servers]).start()
    yield proxy, servers
    proxy.stop()
    for server in servers:
        server.stop()


def browser(address: str) -> httpx.AsyncClient:
    """HTTP from one loopback address of its own, as a browser on its own host."""
    return httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(local_address=address), timeout=5)


async def statuses(client: httpx.AsyncClient, url: str, n: int, **headers: str) -> list[int]:
    body = {"query": "{ me { id } }"}
    auth = {"authorization": f"Bearer {token('someone')}", **headers}
    return [(await client.post(url, json=body, headers=auth)).status_code for _ in range(n)]


@pytestmark_nginx
async def test_per_address_limits_count_each_browser_behind_nginx(
    behind_nginx: tuple[Nginx, list[ServerProcess]],
) -> None:
    proxy, servers = behind_nginx
    async with browser("127.0.0.2") as a, browser("127.0.0.3") as b, browser("127.0.0.4") as c:
        # Burst 4 per address per process, two processes behind round robin: A spends its own.
        spent = await statuses(a, proxy.http_url, 12)
        assert spent.count(429) >= 2, spent
        # B, another browser through the same proxy, is not A.
        assert await statuses(b, proxy.http_url, 2) == [200, 200]
        # C claims to be A: nginx appends C's address, and that is the one counted.
        assert await statuses(c, proxy.http_url, 2, **{"x-forwarded-for": "127.0.0.2"}) == [200, 200]
        # Straight to a server, not through the trusted proxy: the header is not believed.
        direct = servers[0].http_url
        assert await statuses(c, direct, 1, **{"x-forwarded-for": "127.0.0.2"}) == [200]


@pytestmark_nginx
async def test_sockets_and_streams_work_through_nginx_and_the_app_sees_the_browser(
    behind_nginx: tuple[Nginx, list[ServerProcess]], app: AppServer
) -> None:
    proxy, _ = behind_nginx
    ws = await websockets.connect(
        proxy.ws_url,
        subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
        additional_headers={"cookie": "session=cookie-a"},
        local_addr=("127.0.0.5", 0),
    )
    try:
        await ws.send('{"type":"connection_init","payload":{}}')
        ack = await asyncio.wait_for(ws.recv(), 5)
        assert '"userId":"alice"' in str(ack), ack
        connect = [headers for path, headers, _ in app.requests if path == "/connect"][-1]
        assert connect["x-forwarded-for"] == "127.0.0.5"
        query = (
            'subscription { events(groups: ["user_alice"]) { __typename ... on NotifyEvent { message } } }'
        )
        await ws.send(json.dumps({"type": "subscribe", "id": "1", "payload": {"query": query}}))
        async with browser("127.0.0.6") as publisher:
            for attempt in range(50):
                body = {"query": NOTIFY, "variables": {"m": f"m{attempt}"}}
                await publisher.post(
                    proxy.http_url, json=body, headers={"authorization": f"Bearer {PUBLISHER}"}
                )
                try:
                    message = await asyncio.wait_for(ws.recv(), 0.3)
                except TimeoutError:
                    continue
                assert '"NotifyEvent"' in str(message)
                break
            else:
                raise AssertionError("no event through nginx")
    finally:
        await ws.close()


@pytestmark_nginx
async def test_an_sse_stream_gets_its_events_through_nginx(
    behind_nginx: tuple[Nginx, list[ServerProcess]],
) -> None:
    """Through the proxy as configured in docs/deployment.md (no buffering), each event arrives
    as it is published, not when a buffer fills."""
    proxy, _ = behind_nginx
    user = unique("s")
    selection = "{ __typename ... on NotifyEvent { message } }"
    query = f'subscription {{ events(groups: ["user_{user}"]) {selection} }}'
    headers = {"accept": "text/event-stream", "authorization": f"Bearer {token(user)}"}
    async with (
        browser("127.0.0.7") as client,
        client.stream("POST", proxy.http_url, json={"query": query}, headers=headers) as stream,
        browser("127.0.0.8") as publisher,
    ):
        lines = stream.aiter_lines()
        for attempt in range(50):
            body = {"query": NOTIFY.replace("user_alice", f"user_{user}"), "variables": {"m": f"m{attempt}"}}
            await publisher.post(proxy.http_url, json=body, headers={"authorization": f"Bearer {PUBLISHER}"})
            try:
                async with asyncio.timeout(0.3):
                    while not (line := await anext(lines)).startswith("data: "):
                        pass
            except TimeoutError:
                continue
            assert '"NotifyEvent"' in line
            return
    raise AssertionError("no event through nginx")


@pytestmark_nginx
async def test_origins_are_checked_per_page_through_nginx(
    behind_nginx: tuple[Nginx, list[ServerProcess]],
) -> None:
    """Production mode behind the proxy: the app's origin may open a socket, another site's may
    not (403 before the handshake completes), whichever server nginx picks."""
    proxy, _ = behind_nginx
    for _ in range(2):  # round robin: both servers
        ws = await websockets.connect(
            proxy.ws_url,
            subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
            origin="https://app.example",  # type: ignore[arg-type]
            local_addr=("127.0.0.11", 0),
        )
        await ws.close()
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(
                proxy.ws_url,
                subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
                origin="https://evil.example",  # type: ignore[arg-type]
                local_addr=("127.0.0.12", 0),
            )
        assert refused.value.response.status_code == 403
