"""Publishing from other OS processes (sync API, async API, CLI) and across server processes."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest

from tests.conftest import token, unique
from tests.support.client import WsClient, error_codes, http
from tests.support.processes import ROOT, ServerProcess, run_python

SEND_NOTIFY = """mutation($group: String!, $message: String!) {
  sendNotify(group: $group, message: $message) { id group } }"""


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "switchboard", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.fixture
def server_a(redis_servers: tuple[ServerProcess, ServerProcess]) -> ServerProcess:
    return redis_servers[0]


async def test_sync_api_from_another_process(server_a: ServerProcess, publish_env: dict[str, str]) -> None:
    user = unique("u")
    async with WsClient(server_a.ws_url, token(user)) as client:
        events = await client.events()
        event_id = run_python(
            "from switchboard.publish import send_to_group_sync\n"
            f"e = send_to_group_sync('user_{user}', 'send_notify', message='from a task', status='warning')\n"
            "print(e.id)",
            publish_env,
        )
        got = (await events.next())["events"]
        assert (got["id"], got["message"], got["status"]) == (event_id, "from a task", "WARNING")


async def test_a_publisher_follows_its_environment_and_needs_no_server_secret(
    server_a: ServerProcess, publish_env: dict[str, str], prefix: str
) -> None:
    """The publisher reads where to publish on every call (parsed once per distinct value), and
    only what publishing needs: a worker in production mode without the server's secret works."""
    user = unique("u")
    env = {k: v for k, v in publish_env.items() if k != "SWITCHBOARD_SECRET"}
    async with WsClient(server_a.ws_url, token(user)) as client:
        events = await client.events()
        event_id = run_python(
            "import os\n"
            "from switchboard.publish import send_to_group_sync as send\n"
            "os.environ['SWITCHBOARD_PREFIX'] = 'another_deployment'\n"
            f"send('user_{user}', 'data', payload={{'n': 1}})\n"
            f"os.environ['SWITCHBOARD_PREFIX'] = '{prefix}'\n"
            f"print(send('user_{user}', 'data', payload={{'n': 2}}).id)",
            {**env, "SWITCHBOARD_MODE": "prod"},
        )
        got = (await events.next())["events"]
        assert (got["id"], got["payload"]) == (event_id, {"n": 2})


async def test_channels_style_helper_from_another_process(
    server_a: ServerProcess, publish_env: dict[str, str]
) -> None:
    user = unique("u")
    async with WsClient(server_a.ws_url, token(user)) as client:
        events = await client.events()
        run_python(
            "from switchboard.publish import send_to_socket_group\n"
            f"send_to_socket_group(group_name='user_{user}', event='send_notify',"
            " message='Test message', status='info')",
            publish_env,
        )
        got = (await events.next())["events"]
        assert (got["message"], got["status"]) == ("Test message", "INFO")


async def test_async_api_from_another_process(server_a: ServerProcess, publish_env: dict[str, str]) -> None:
    note = unique()
    async with WsClient(server_a.ws_url, token(unique("u"))) as client:
        await client.execute("mutation($n: ID!) { openNote(noteId: $n) { id } }", n=note)
        events = await client.events()
        run_python(
            "import asyncio\nfrom switchboard.publish import send_to_group\n"
            f"asyncio.run(send_to_group('note_{note}', 'data', payload={{'rows': [1, 2]}}))",
            publish_env,
        )
        got = (await events.next())["events"]
        assert (got["__typename"], got["payload"]) == ("DataEvent", {"rows": [1, 2]})


async def test_cli_publishes_notify_and_data(server_a: ServerProcess, publish_env: dict[str, str]) -> None:
    user, note = unique("u"), unique()
    async with WsClient(server_a.ws_url, token(user)) as client:
        await client.execute("mutation($n: ID!) { openNote(noteId: $n) { id } }", n=note)
        events = await client.events()
        first = run_cli(
            ["publish", "notify", "--group", f"user_{user}", "--message", "Hi", "--status", "info"],
            publish_env,
        )
        assert first.returncode == 0, first.stderr
        second = run_cli(["publish", "data", "--group", f"note_{note}", "--payload", '{"k": 1}'], publish_env)
        assert second.returncode == 0, second.stderr
        got = [(await events.next())["events"], (await events.next())["events"]]
        assert got[0]["id"] == orjson.loads(first.stdout)["id"]
        assert (got[0]["message"], got[0]["status"]) == ("Hi", "INFO")
        assert got[1]["id"] == orjson.loads(second.stdout)["id"]
        assert got[1]["payload"] == {"k": 1}


async def test_cli_refuses_bad_input_clearly(publish_env: dict[str, str]) -> None:
    bad_group = run_cli(["publish", "notify", "--group", "no spaces", "--message", "x"], publish_env)
    assert bad_group.returncode == 1 and "group name" in bad_group.stderr
    bad_json = run_cli(["publish", "data", "--group", "g", "--payload", "{nope"], publish_env)
    assert bad_json.returncode == 2 and "not JSON" in bad_json.stderr
    env = {k: v for k, v in publish_env.items() if k != "REDIS_URL"}
    no_redis = run_cli(["publish", "notify", "--group", "g", "--message", "x"], env)
    assert no_redis.returncode == 1 and "REDIS_URL" in no_redis.stderr


async def test_two_server_processes_on_one_redis(
    redis_servers: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = redis_servers
    user, note = unique("u"), unique()
    async with WsClient(a.ws_url, token(user)) as on_a, WsClient(b.ws_url, token(user)) as on_b:
        for client in (on_a, on_b):
            await client.execute("mutation($n: ID!) { openNote(noteId: $n) { id } }", n=note)
        subs = [await on_a.events(), await on_b.events()]
        for publish_on in (a, b):
            body = await http(
                publish_on.http_url,
                SEND_NOTIFY,
                token("pub", publisher=True),
                group=f"note_{note}",
                message=f"via {publish_on.port}",
            )
            assert "errors" not in body, body
            for sub in subs:
                assert (await sub.next())["events"]["message"] == f"via {publish_on.port}"


async def test_unknown_event_type_is_ignored_and_the_session_lives_on(
    server_a: ServerProcess, publish_env: dict[str, str]
) -> None:
    user = unique("u")
    async with WsClient(server_a.ws_url, token(user)) as client:
        events = await client.events()
        run_python(
            "from switchboard.publish import send_to_group_sync\n"
            f"send_to_group_sync('user_{user}', 'mystery', anything=1)\n"
            f"send_to_group_sync('user_{user}', 'notify', message='after the mystery')",
            publish_env,
        )
        assert (await events.next())["events"]["message"] == "after the mystery"
        await events.nothing_within(0.3)
        assert (await client.session_info())["groups"][0] == "all"


async def test_publish_mutation_needs_a_user(server: ServerProcess) -> None:
    body = await http(server.http_url, SEND_NOTIFY, None, group="all", message="anonymous")
    assert error_codes(body) == ["UNAUTHENTICATED"]
    bad = await http(
        server.http_url, SEND_NOTIFY, token("x", publisher=True), group="bad group!", message="m"
    )
    assert error_codes(bad) == ["BAD_USER_INPUT"]
