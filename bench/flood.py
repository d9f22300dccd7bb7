"""What unauthenticated attempts cost (issue 25: "cheap refusal"). One server (hypercorn, one
process, Redis layer, prod mode) whose users are named by the app's connect endpoint (a real
HTTP server, answering at once); a bystander subscribed to `all` measures the latency of an
event published every 20 ms; meanwhile an attacker process makes `--rate` attempts per second
from 10 loopback addresses: 80% WebSocket connection_init with a cookie the app does not know
(each is asked about: 401, closed 4403), 20% SSE subscriptions with no credentials (refused).
During the flood 20 real users log in with their cookies, one every 250 ms.

  python bench/flood.py [--seconds 10] [--rate 50]     (writes bench/results/flood.json)

Reports, with no attacker and with it: the bystander's p50 / p99 / max, the server's CPU per
refused attempt (CPU seconds over the flood, less the same time without it, per attempt), and
real users in.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import websockets  # noqa: E402

from bench.bystander import BYSTANDER, Bystander  # noqa: E402
from tests.support.app_server import AppServer  # noqa: E402
from tests.support.processes import RedisServer, ServerProcess  # noqa: E402

ADDRESSES = [f"127.0.0.{10 + i}" for i in range(10)]


def say(message: str) -> None:
    print(f"[flood {time.strftime('%H:%M:%S')}] {message}", flush=True)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def attempt(http_url: str, ws_url: str, n: int, counts: dict[str, int]) -> None:
    address = ADDRESSES[n % len(ADDRESSES)]
    try:
        if n % 5 == 4:  # an SSE subscription with no credentials
            transport = httpx.AsyncHTTPTransport(local_address=address)
            async with httpx.AsyncClient(transport=transport, timeout=5) as client:
                reply = await client.post(
                    http_url,
                    json={"query": BYSTANDER},
                    headers={"accept": "text/event-stream"},
                )
                key = f"sse-{reply.status_code}"
        else:  # connection_init with a cookie the app does not know
            async with websockets.connect(
                ws_url,
                subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
                additional_headers={"cookie": f"session=nobody-{n}"},
                local_addr=(address, 0),
                open_timeout=5,
            ) as ws:
                await ws.send('{"type":"connection_init","payload":{}}')
                await asyncio.wait_for(ws.recv(), 5)
                key = "ws-admitted"
    except websockets.ConnectionClosed as closed:
        key = f"ws-{closed.rcvd.code if closed.rcvd else 'dropped'}"
    except Exception as exc:  # a refused handshake, a timeout: counted, not fatal
        key = type(exc).__name__
    counts[key] = counts.get(key, 0) + 1


async def attack(http_url: str, ws_url: str, seconds: float, rate: float) -> dict[str, int]:
    counts: dict[str, int] = {}
    started = time.monotonic()
    tasks = []
    n = 0
    while time.monotonic() - started < seconds:
        tasks.append(asyncio.create_task(attempt(http_url, ws_url, n, counts)))
        n += 1
        await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
    await asyncio.gather(*tasks)
    counts["attempts"] = n
    return counts


async def real_users(ws_url: str, count: int) -> int:
    got = 0
    for i in range(count):
        try:
            async with websockets.connect(
                ws_url,
                subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
                additional_headers={"cookie": f"session=real-{i}"},
                local_addr=("127.0.0.200", 0),
            ) as ws:
                await ws.send('{"type":"connection_init","payload":{}}')
                reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
                got += reply.get("type") == "connection_ack"
        except Exception:  # refused or timed out: not in
            pass
        await asyncio.sleep(0.25)
    return got


async def measure(server: ServerProcess, attacking: bool, seconds: float, rate: float) -> dict[str, Any]:
    assert server.proc is not None
    bystander = await Bystander.open(server.ws_url)
    attacker = None
    if attacking:
        attacker = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--attack", "--http", server.http_url, "--ws", server.ws_url,
            "--seconds", str(seconds), "--rate", str(rate), stdout=subprocess.PIPE,
        )  # fmt: skip
    users = asyncio.create_task(real_users(server.ws_url, 20))
    cpu_before = cpu_seconds(server.proc.pid)
    await bystander.publish(seconds)
    cpu = cpu_seconds(server.proc.pid) - cpu_before
    admitted = await users
    outcome: dict[str, int] = {}
    if attacker is not None:
        out, _ = await attacker.communicate()
        outcome = json.loads(out.decode().strip().splitlines()[-1])
    await bystander.close(settle=0.5)
    return {
        "attacking": attacking,
        **bystander.figures(),
        "server_cpu_s": round(cpu, 3),
        "real_users_in": admitted,
        "attacker": outcome,
    }


async def run(seconds: float, rate: float) -> list[dict[str, Any]]:
    redis = RedisServer().start()
    app = AppServer().start()
    app.sessions.update({f"real-{i}": f"real{i}" for i in range(20)})
    env = {
        "REDIS_URL": redis.url,
        "SWITCHBOARD_PREFIX": "flood",
        "SWITCHBOARD_LOG_LEVEL": "WARNING",
        "SWITCHBOARD_MODE": "prod",
        "SWITCHBOARD_CONNECT_URL": f"{app.url}/connect",
    }
    server = ServerProcess(env).start()
    os.environ.update(REDIS_URL=redis.url, SWITCHBOARD_PREFIX="flood")  # where send_to_group publishes
    rows = []
    try:
        for attacking in (False, True):
            say(f"attacking={attacking}")
            row = await measure(server, attacking, seconds, rate)
            say(json.dumps(row))
            rows.append(row)
    finally:
        server.stop()
        app.stop()
        redis.stop()
    quiet, flood = rows
    attempts = flood["attacker"].get("attempts", 0)
    if attempts:
        flood["cpu_ms_per_attempt"] = round(
            (flood["server_cpu_s"] - quiet["server_cpu_s"]) / attempts * 1000, 2
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--rate", type=float, default=50.0, help="attempts per second, all addresses together"
    )
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "flood.json"))
    parser.add_argument("--attack", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--http", help=argparse.SUPPRESS)
    parser.add_argument("--ws", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.attack:
        print(json.dumps(asyncio.run(attack(args.http, args.ws, args.seconds, args.rate))))
        return 0
    rows = asyncio.run(run(args.seconds, args.rate))
    Path(args.out).write_text(
        json.dumps({"seconds": args.seconds, "rate": args.rate, "rows": rows}, indent=2) + "\n"
    )
    print(
        "| attacker | bystander p50 / p99 / max ms | received/sent | server CPU s | CPU ms per attempt | real users in |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {'flood' if r['attacking'] else 'none'} | {r['p50_ms']} / {r['p99_ms']} / {r['max_ms']} "
            f"| {r['received']}/{r['sent']} | {r['server_cpu_s']} | {r.get('cpu_ms_per_attempt', '-')} "
            f"| {r['real_users_in']}/20 |"
        )
    return 0 if all(r["received"] == r["sent"] and r["real_users_in"] == 20 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
