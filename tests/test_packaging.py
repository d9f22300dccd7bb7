"""What `pip install switchboard-live` gets, in fresh virtual environments (the editable install
of the test run would hide a missing file, a stray top-level package or an undeclared dependency).

- The wheel installs one import package, `switchboard`, with the pages the server serves and
  GraphiQL's assets.
- The plain install publishes to Redis with neither Quart, Strawberry nor hypercorn installed.
- Installed beside an app with its own `server.py` and `schema.py`, and PyPI's `schema` package,
  nothing shadows anything: the app imports its modules, ours, and PyPI's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.support.processes import ROOT, free_port

INSTALL_TIMEOUT = 600
pytestmark = pytest.mark.timeout(INSTALL_TIMEOUT)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"  # setuptools writes build/ into the tree it builds: not ours
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("server", "schema"):
        shutil.copytree(ROOT / name, source / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--wheel-dir",
            str(tmp / "dist"),
            str(source),
        ],
        check=True,
        cwd=tmp,
        timeout=120,
        capture_output=True,
    )
    (built,) = (tmp / "dist").glob("switchboard_live-*.whl")
    return built


def venv(path: Path, *requirements: str) -> Path:
    """A fresh virtual environment with `requirements` installed; returns its python."""
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=120)
    python = path / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *requirements],
        check=True,
        timeout=INSTALL_TIMEOUT - 60,
        capture_output=True,
    )
    return python


def run(python: Path, code: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(python), "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_wheel_installs_one_import_package_with_its_pages(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == {"switchboard"}
    assert {
        "switchboard/web/static/graphiql.html",
        "switchboard/web/static/demo.html",
        "switchboard/py.typed",
        "switchboard/schema/py.typed",
    } <= names
    vendored = {p.name for p in (ROOT / "server" / "web" / "static" / "vendor").glob("*.js*")}
    assert vendored, "run `make assets` first: GraphiQL's assets come from the npm registry"
    assert {f"switchboard/web/static/vendor/{name}" for name in vendored} <= names


def test_every_folder_of_the_package_is_in_the_wheel(wheel: Path) -> None:
    """pyproject.toml lists the package's folders: one forgotten there is missing here."""
    names = set(zipfile.ZipFile(wheel).namelist())
    folders = {p.parent.relative_to(ROOT / "server") for p in (ROOT / "server").rglob("__init__.py")}
    expected = {"switchboard/" + (f"{f}/" if str(f) != "." else "") + "__init__.py" for f in folders}
    expected.add("switchboard/schema/__init__.py")
    assert expected <= names, sorted(expected - names)


@pytest.fixture
def listener(redis_url: str, prefix: str) -> Iterator[redis.client.PubSub]:
    """A plain Redis subscriber to group `packaging` as a Switchboard server would hold one."""
    client = redis.Redis.from_url(redis_url)
    pubsub = client.pubsub()
    pubsub.subscribe(f"{prefix}:group:packaging")
    assert pubsub.get_message(timeout=5)["type"] == "subscribe"  # type: ignore[index]
    yield pubsub
    pubsub.close()
    client.close()


def received(pubsub: redis.client.PubSub) -> bytes:
    message = pubsub.get_message(timeout=10)
    assert message is not None and message["type"] == "message", message
    return message["data"]  # type: ignore[no-any-return]


def test_the_plain_install_publishes_without_the_server(
    wheel: Path, tmp_path: Path, redis_url: str, prefix: str, listener: redis.client.PubSub
) -> None:
    python = venv(tmp_path / "venv", str(wheel))
    env = {**os.environ, "REDIS_URL": redis_url, "SWITCHBOARD_PREFIX": prefix}
    env.pop("SWITCHBOARD_HISTORY_SIZE", None)
    out = run(
        python,
        "import importlib.util, sys\n"
        "from switchboard import send_to_group_sync\n"
        "from switchboard.testing import captured_events\n"
        "with captured_events() as events:\n"
        "    send_to_group_sync('packaging', 'notify', message='captured')\n"
        "assert [e.fields['message'] for e in events] == ['captured']\n"
        "send_to_group_sync('packaging', 'notify', message='from a worker')\n"
        "missing = [m for m in ('quart', 'strawberry', 'hypercorn', 'graphql', 'werkzeug')"
        " if importlib.util.find_spec(m) is not None]\n"
        "print('present:', missing)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('quart', 'strawberry', 'hypercorn')))\n",
        cwd=tmp_path,
        env=env,
    )
    assert "present: []" in out and out.strip().endswith("[]"), out
    assert b"from a worker" in received(listener)
    serve = subprocess.run(
        [str(tmp_path / "venv" / "bin" / "switchboard"), "serve", "--port", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert serve.returncode == 2 and 'pip install "switchboard-live[server]"' in serve.stderr, serve.stderr


def test_beside_an_app_with_its_own_server_and_schema_modules(
    wheel: Path, tmp_path: Path, redis_url: str, prefix: str, listener: redis.client.PubSub
) -> None:
    python = venv(tmp_path / "venv", f"{wheel}[server]", "schema")
    project = tmp_path / "project"
    project.mkdir()
    (project / "server.py").write_text("WHO = 'the app'\n")
    (project / "schema.py").write_text("WHO = 'the app'\n")
    env = {**os.environ, "REDIS_URL": redis_url, "SWITCHBOARD_PREFIX": prefix}
    env.pop("SWITCHBOARD_HISTORY_SIZE", None)
    out = run(
        python,
        "import server, schema\n"
        "from switchboard import build_schema, create_app, send_to_group_sync\n"
        "assert server.WHO == schema.WHO == 'the app'\n"
        "assert 'type Query' in build_schema().as_str()\n"
        "send_to_group_sync('packaging', 'notify', message='from the app')\n"
        "print('ok')\n",
        cwd=project,
        env=env,
    )
    assert out.strip() == "ok"
    assert b"from the app" in received(listener)
    # PyPI's `schema` is intact: ours did not overwrite its files.
    assert run(python, "import schema; print(schema.Schema(int).validate(1))", cwd=tmp_path).strip() == "1"

    port = free_port()
    proc = subprocess.Popen(
        [str(tmp_path / "venv" / "bin" / "switchboard"), "serve", "--port", str(port)],
        cwd=project,
        env={k: v for k, v in env.items() if k != "REDIS_URL"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "switchboard serve never answered /healthz"
            time.sleep(0.2)
        reply = httpx.post(f"http://127.0.0.1:{port}/graphql", json={"query": "{ __typename }"}, timeout=5)
        assert reply.json() == {"data": {"__typename": "Query"}}
    finally:
        proc.terminate()
        proc.communicate(timeout=10)  # waits, and closes its pipe
