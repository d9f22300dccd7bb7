"""Every client example runs against a live server and receives an event published while it runs."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator

import orjson
import pytest

from tests.conftest import token, unique
from tests.support.client import WsClient, http
from tests.support.processes import ROOT, ServerProcess

EXAMPLES = ROOT / "client_examples"
NOTIFY = "mutation($g: String!, $m: String!) { sendNotify(group: $g, message: $m) { id } }"


@pytest.fixture
def server(redis_servers: tuple[ServerProcess, ServerProcess]) -> ServerProcess:
    return redis_servers[0]


async def lines_of(proc: asyncio.subprocess.Process) -> AsyncIterator[dict[str, object]]:
    assert proc.stdout is not None
    while True:
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        if not line:
            return
        yield orjson.loads(line)


async def publish_until_seen(
    server: ServerProcess, proc: asyncio.subprocess.Process, group: str
) -> dict[str, object]:
    """Publish to `group` every half second until the example prints that event; return it."""
    marker = unique("hello-")
    seen: asyncio.Future[dict[str, object]] = asyncio.get_running_loop().create_future()

    async def read() -> None:
        async for event in lines_of(proc):
            if event.get("message") == marker and not seen.done():
                seen.set_result(event)

    reader = asyncio.create_task(read())
    try:
        for _ in range(40):
            await http(server.http_url, NOTIFY, token("pub", publisher=True), g=group, m=marker)
            done, _ = await asyncio.wait({seen, reader}, timeout=0.5)
            if seen in done:
                return seen.result()
            if reader in done:
                break
        stderr = (await proc.stderr.read()).decode() if proc.stderr and proc.returncode is not None else ""
        raise AssertionError(f"the example never printed the event; stderr: {stderr}")
    finally:
        reader.cancel()


async def start_example(
    args: list[str], server: ServerProcess, user: str, note: str, cwd: str | None = None
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *args,
        "--url",
        server.ws_url,
        "--token",
        token(user),
        "--note",
        note,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
    )


async def run_example(args: list[str], server: ServerProcess, note: str, cwd: str | None = None) -> None:
    user = unique("u")
    proc = await start_example(args, server, user, note, cwd)
    try:
        event = await publish_until_seen(server, proc, f"note_{note}")
        assert event["__typename"] == "NotifyEvent" and event["group"] == f"note_{note}"
        event = await publish_until_seen(server, proc, f"user_{user}")
        assert event["group"] == f"user_{user}"
    finally:
        if proc.returncode is None:
            proc.terminate()
            await proc.wait()


async def test_python_example_receives_events(server: ServerProcess) -> None:
    await run_example([sys.executable, str(EXAMPLES / "python" / "events_client.py")], server, unique())


async def test_node_example_receives_events(server: ServerProcess) -> None:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are not installed: the Node example was not run")
    folder = EXAMPLES / "node"
    if not (folder / "node_modules" / "graphql-ws").exists():
        done = await asyncio.to_thread(
            subprocess.run,
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
    await run_example([node, "client.mjs"], server, unique(), cwd=str(folder))


async def test_curl_example_publishes(server: ServerProcess) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    user = unique("u")
    async with WsClient(server.ws_url, token(user)) as client:
        events = await client.events()
        env = {**os.environ, "URL": server.http_url, "TOKEN": token("svc", publisher=True)}
        done = await asyncio.to_thread(
            subprocess.run,
            [str(EXAMPLES / "curl" / "publish.sh"), f"user_{user}", 'Say "hi" \\ from curl', "SUCCESS"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        published = orjson.loads(done.stdout)["data"]["sendNotify"]
        got = (await events.next())["events"]
        assert (got["id"], got["message"], got["status"]) == (
            published["id"],
            'Say "hi" \\ from curl',
            "SUCCESS",
        )


@pytest.mark.parametrize("language", ["python", "node"])
async def test_examples_resume_after_a_server_restart(language: str, redis_url: str) -> None:
    """The server goes away; events are published meanwhile; the example reconnects and replays them."""
    if language == "node" and shutil.which("node") is None:
        pytest.skip("node is not installed: the Node example was not run")
    server = ServerProcess({"REDIS_URL": redis_url, "SWITCHBOARD_PREFIX": unique("ex")}).start()
    note = unique()
    if language == "python":
        command, cwd = [sys.executable, str(EXAMPLES / "python" / "events_client.py")], None
    else:
        command, cwd = ["node", "client.mjs"], str(EXAMPLES / "node")
    proc = await start_example(command, server, unique("u"), note, cwd)
    try:
        await publish_until_seen(server, proc, f"note_{note}")
        server.stop()
        missed = [unique("missed-") for _ in range(3)]
        publish = "from switchboard.publish import send_to_group_sync as s\n" + "".join(
            f"s('note_{note}', 'notify', message={m!r})\n" for m in missed
        )
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-c", publish],
            env=server.env,
            cwd=ROOT,
            capture_output=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        server.start()  # same port
        printed: list[dict[str, object]] = []
        async for event in lines_of(proc):
            printed.append(event)
            if event.get("message") == missed[-1]:
                break
        resumes = [e for e in printed if e.get("__typename") == "ResumeEvent"]
        assert resumes and all(e["recovered"] for e in resumes if e["group"] == f"note_{note}"), resumes
        assert [e["message"] for e in printed if e.get("message") in missed] == missed
    finally:
        if proc.returncode is None:
            proc.terminate()
            await proc.wait()
        server.stop()
