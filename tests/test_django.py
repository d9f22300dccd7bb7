"""A real Django project (client_examples/django: session login, a Note model, SQLite) beside a
real Switchboard on Redis: the browser's session cookie is all it takes to connect, the app's own
rule decides notes, a view's event goes out on commit and never on rollback, and logout in Django
ends the live connection within SWITCHBOARD["EXPIRES_IN"]."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.support.processes import ROOT, TEST_SECRET, ServerProcess, free_port, run_python
from tests.test_app_auth import OPEN, Peer, code_of

SITE = ROOT / "client_examples" / "django"
EVENTS = 'subscription { events(notes: ["1"]) { __typename ... on DataEvent { payload } } }'
SETUP = """
from django.contrib.auth.models import User
from notes.models import Note
alice = User.objects.create_user("alice", password="alice-pw")
bob = User.objects.create_user("bob", password="bob-pw")
Note.objects.create(pk=1, title="alice's", owner=alice)
Note.objects.create(pk=2, title="bob's", owner=bob)
print(alice.pk)
"""


@pytest.fixture(scope="module")
def site(
    redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, ServerProcess, str]]:
    port, prefix = free_port(), f"dj{time.monotonic_ns()}"
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "notesite.settings",
        "NOTESITE_DB": str(tmp_path_factory.mktemp("django") / "db.sqlite3"),
        "NOTESITE_EXPIRES_IN": "1",
        "REDIS_URL": redis_url,
        "SWITCHBOARD_PREFIX": prefix,
        "SWITCHBOARD_HOOK_KEY": "shared-key",
        "SWITCHBOARD_SECRET": TEST_SECRET,
        "SWITCHBOARD_URL": "ws://switchboard.example/graphql",
    }

    def manage(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=SITE,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    manage("migrate", "--verbosity", "0")
    alice = manage("shell", "-c", SETUP).split()[-1]  # after what the shell says of itself
    django = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        cwd=SITE,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    switchboard = None
    try:
        for _ in range(100):
            try:
                httpx.get(f"{base}/login/", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        switchboard = ServerProcess(
            {
                "REDIS_URL": redis_url,
                "SWITCHBOARD_PREFIX": prefix,
                "SWITCHBOARD_CONNECT_URL": f"{base}/switchboard/connect/",
                "SWITCHBOARD_PERMISSION_URL": f"{base}/switchboard/note-permission/",
                "SWITCHBOARD_HOOK_KEY": "shared-key",
                "SWITCHBOARD_ANONYMOUS": "0",
            }
        ).start()
        yield base, switchboard, alice
    finally:
        if switchboard is not None:
            switchboard.stop()
        django.terminate()
        django.wait(10)


def login(client: httpx.Client, base: str, user: str, password: str) -> str:
    """Django's own login form, CSRF and all; the session cookie it sets."""
    form = client.get(f"{base}/login/").text
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form)
    assert csrf is not None
    reply = client.post(
        f"{base}/login/",
        data={"username": user, "password": password, "csrfmiddlewaretoken": csrf.group(1)},
        headers={"Referer": f"{base}/login/"},
    )
    assert reply.status_code == 302, reply.text[:300]
    return str(client.cookies["sessionid"])


def post(client: httpx.Client, base: str, path: str, **data: str) -> httpx.Response:
    data["csrfmiddlewaretoken"] = client.cookies["csrftoken"]
    return client.post(f"{base}{path}", data=data, headers={"Referer": f"{base}/"})


async def test_a_django_session_connects_opens_its_notes_and_hears_committed_events(
    site: tuple[str, ServerProcess, str],
) -> None:
    base, switchboard, alice = site
    with httpx.Client() as browser:
        session = await asyncio.to_thread(login, browser, base, "alice", "alice-pw")
        peer = await Peer.connect(switchboard.ws_url, cookie=f"sessionid={session}")
        assert isinstance(peer, Peer), f"refused with {peer}"
        assert peer.ack["userId"] == alice
        info = (await asyncio.to_thread(browser.get, f"{base}/switchboard/info/")).json()
        assert info["url"] == "ws://switchboard.example/graphql" and info["userId"] == alice
        by_token = await Peer.connect(switchboard.ws_url, params={"authorization": f"Bearer {info['token']}"})
        assert isinstance(by_token, Peer) and by_token.ack["userId"] == alice  # a page without cookies
        await by_token.ws.close()
        outcomes = {n: code_of(await peer.execute(OPEN, n=n)) for n in ("1", "2", "abc", "999")}
        assert outcomes == {"1": None, "2": "FORBIDDEN", "abc": "BAD_USER_INPUT", "999": "FORBIDDEN"}

        await peer.ws.send(
            orjson.dumps({"type": "subscribe", "id": "e", "payload": {"query": EVENTS}}).decode()
        )
        await asyncio.sleep(0.3)
        rolled = await asyncio.to_thread(post, browser, base, "/notes/1/comment/?fail=1", text="never")
        assert rolled.status_code == 409
        kept = await asyncio.to_thread(post, browser, base, "/notes/1/comment/", text="hello")
        assert kept.status_code == 200, kept.text[:300]
        async with asyncio.timeout(5):
            while True:
                message = orjson.loads(await peer.ws.recv())
                if message["type"] == "next" and message["id"] == "e":
                    event = message["payload"]["data"]["events"]
                    if event["__typename"] == "DataEvent":
                        break
        assert event["payload"] == {"comment": "hello"}, "the rolled-back comment was delivered first"

        await asyncio.to_thread(post, browser, base, "/logout/")
        code, took = await peer.closed_with(within=6)
        assert code == 4403 and took < 3.0, (code, took)
    assert await Peer.connect(switchboard.ws_url, cookie=f"sessionid={session}") == 4403


async def test_the_hook_views_answer_only_switchboard(site: tuple[str, ServerProcess, str]) -> None:
    base, _, _ = site
    async with httpx.AsyncClient() as client:
        reply = await client.post(f"{base}/switchboard/note-permission/", json={"user": "1", "note_id": "1"})
    assert reply.status_code == 403


def test_the_example_project_is_where_the_test_expects_it() -> None:
    assert (SITE / "manage.py").exists() and Path(SITE / "notes" / "migrations" / "0001_initial.py").exists()


def test_the_example_projects_own_tests_capture_what_its_views_publish() -> None:
    """The app's Django TestCase (client_examples/django/notes/tests.py) needs no Redis."""
    env = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "notesite.settings"}
    done = subprocess.run(
        [sys.executable, "manage.py", "test", "notes", "--verbosity", "2"],
        cwd=SITE,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Ran 3 tests" in done.stderr


HOOK_VIEWS = """
import django
from django.conf import settings
settings.configure(
    SECRET_KEY="x", ALLOWED_HOSTS=["*"], SWITCHBOARD={"HOOK_KEY": KEY},
    INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
)
django.setup()
from django.core.management import call_command
from django.test import RequestFactory
from switchboard.django.views import note_permission
call_command("migrate", verbosity=0)
from django.contrib.auth.models import User
User.objects.create(pk=1, username="a")
view = note_permission(lambda user, note: True)
for sent in SENT:
    extra = {} if sent is None else {"HTTP_X_SWITCHBOARD_KEY": sent}
    body = '{"user": "1", "note_id": "1"}'
    request = RequestFactory().post("/p", data=body, content_type="application/json", **extra)
    print(view(request).status_code)
"""


@pytest.mark.parametrize(
    ("key", "sent", "statuses"),
    [
        (None, [None, "", "anything"], [403, 403, 403]),  # no key set: nobody is Switchboard
        ("", [None, ""], [403, 403]),
        ("k3y", [None, "wrong", "k3\u00e9y", "k3y"], [403, 403, 403, 200]),
    ],
)
def test_the_hook_views_refuse_without_the_key_and_never_fail(
    key: str | None, sent: list[str | None], statuses: list[int]
) -> None:
    """The views answer 403 to anyone without SWITCHBOARD["HOOK_KEY"] (unset or empty: to
    everyone), and a header that is not ASCII is a 403, not a 500."""
    code = f"KEY = {key!r}\nSENT = {sent!r}\n" + HOOK_VIEWS
    printed = run_python(code, {**os.environ, "PYTHONPATH": str(ROOT)}).split()
    assert [int(s) for s in printed] == statuses


def test_the_publish_api_reads_the_django_setting_without_any_setup(redis_url: str) -> None:
    """A Django process with SWITCHBOARD["REDIS_URL"] and no REDIS_URL in its environment:
    send_to_socket_group publishes there from the first call (it raised LayerNotConfigured
    until some switchboard.django.publish call had written the environment)."""
    prefix = f"djpub{time.monotonic_ns()}"
    code = f"""
import django, redis
from django.conf import settings
settings.configure(SWITCHBOARD={{"REDIS_URL": {redis_url!r}, "PREFIX": {prefix!r}}})
django.setup()
from switchboard.layers.redis import group_channel
listener = redis.Redis.from_url({redis_url!r}).pubsub()
listener.subscribe(group_channel({prefix!r}, "user_7"))
listener.get_message(timeout=2)
from switchboard.publish import send_to_socket_group
send_to_socket_group(group_name="user_7", event="notify", message="from django", status="info")
message = listener.get_message(timeout=5)
print("from django" in message["data"].decode())
"""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "SWITCHBOARD_PREFIX")}
    assert run_python(code, {**env, "PYTHONPATH": str(ROOT)}).split() == ["True"]
