"""What one client's heaviest allowed work costs everyone else's delivery (issue 15: "no operation
holds the event loop"). One server (hypercorn, one process, Redis layer); a bystander subscribed
to `all` measures the latency of an event published every 20 ms (from another process, through
Redis); meanwhile one attacker (another process, one user, one address) runs one case in a loop,
at the rate its budgets let it:

  http-heavy   HTTP queries at the document limits, and 60 KB documents the token limit refuses
  since        WebSocket subscribes resuming the most groups allowed, over and over
  fat-subs     32 subscriptions of documents at the field and alias limits, with 4 KiB of
               variables each, on `all`: every event is rendered for each of them too
  queries      `sessions` and `presence` queries over the WebSocket as fast as allowed
  literal-subs 2 sockets x 32 subscriptions whose `groups` are literal lists at the cap (52
               names of 99 characters), on `all`: what pushed a bystander's p50 to 6.3 s when
               1900 literal groups were coerced again for every event
  fragments    unauthenticated POSTs of documents whose fragments each spread the next twice
               (23 levels, 944 bytes, and 120 levels near the token limit), as fast as the
               address's budget allows: 27 s of frozen loop each, before the linear cost check

  python bench/stall.py [--seconds 10] [--cases a,b]     (writes bench/results/stall.json)

For each case: the bystander's p50 / p99 / max latency, against the same with no attacker.
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

from bench.bystander import Bystander, ws_session  # noqa: E402
from switchboard.security.auth import mint_token  # noqa: E402
from tests.support.processes import TEST_SECRET, RedisServer, ServerProcess  # noqa: E402

CASES = ("none", "http-heavy", "since", "fat-subs", "queries", "literal-subs", "fragments")
ALIASED = " ".join(f"a{i}: __typename" for i in range(15))
FAT = (
    "subscription($v: [String!]) { events(groups: $v) { "
    + ALIASED
    + " "
    + "__typename " * 150
    + "... on DataEvent { id group payload sentAt cursor } ... on NotifyEvent { id message status } } }"
)
HEAVY_HTTP = "query { " + ALIASED + " " + "__typename " * 180 + "}"
REFUSED_HTTP = "{ " + "a " * 30_000 + "}"
LITERAL_GROUPS = ", ".join(['"all"'] + [f'"{i:02d}' + "g" * 97 + '"' for i in range(51)])
LITERAL_SUB = (
    f"subscription {{ events(groups: [{LITERAL_GROUPS}]) {{ "
    "__typename ... on DataEvent { id group payload sentAt cursor } } }"
)


def multiplying_fragments(levels: int) -> str:
    fragments = [f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}" for i in range(levels)]
    return " ".join(["query { ...F0 }", *fragments, f"fragment F{levels} on Query {{ __typename }}"])


def say(message: str) -> None:
    print(f"[stall {time.strftime('%H:%M:%S')}] {message}", flush=True)


async def answer_pings(ws: Any, counts: dict[str, int]) -> None:
    async for raw in ws:
        message = json.loads(raw)
        if message["type"] == "ping":
            await ws.send('{"type":"pong"}')
        elif message["type"] == "error":
            code = message["payload"][0].get("extensions", {}).get("code", "error")
            counts[code] = counts.get(code, 0) + 1
        elif message["type"] == "next":
            counts["next"] = counts.get("next", 0) + 1


async def attack(case: str, http_url: str, ws_url: str, seconds: float) -> dict[str, int]:
    counts: dict[str, int] = {}
    deadline = time.monotonic() + seconds
    if case == "fragments":
        documents = [multiplying_fragments(23), multiplying_fragments(120)]
        async with httpx.AsyncClient(timeout=30) as client:  # no credentials: refused for its cost
            n = 0
            while time.monotonic() < deadline:
                reply = await client.post(http_url, json={"query": documents[n % 2]})
                codes = [e.get("extensions", {}).get("code") for e in reply.json().get("errors") or []]
                key = ",".join(str(c) for c in codes) or "ok"
                counts[key] = counts.get(key, 0) + 1
                n += 1
        return counts
    if case == "literal-subs":
        sockets = [await ws_session(ws_url, f"attacker-{case}") for _ in range(2)]
        readers = [asyncio.create_task(answer_pings(ws, counts)) for ws in sockets]
        try:
            for s, ws in enumerate(sockets):
                for i in range(32):
                    payload = {"query": LITERAL_SUB}
                    await ws.send(json.dumps({"id": f"{s}-{i}", "type": "subscribe", "payload": payload}))
            await asyncio.sleep(max(0.0, deadline - time.monotonic()))
        finally:
            for reader in readers:
                reader.cancel()
            for ws in sockets:
                await ws.close()
        return counts
    if case == "http-heavy":
        headers = {"authorization": f"Bearer {mint_token(TEST_SECRET, f'attacker-{case}')}"}
        async with httpx.AsyncClient(timeout=30) as client:

            async def loop() -> None:
                while time.monotonic() < deadline:
                    for query in (HEAVY_HTTP, REFUSED_HTTP):
                        reply = await client.post(http_url, json={"query": query}, headers=headers)
                        counts[str(reply.status_code)] = counts.get(str(reply.status_code), 0) + 1

            await asyncio.gather(*(loop() for _ in range(4)))
        return counts
    ws = await ws_session(ws_url, f"attacker-{case}")  # one user per case: its own budgets
    reader = asyncio.create_task(answer_pings(ws, counts))
    try:
        if case == "fat-subs":
            variables = {"v": ["all"] + [f"pad_{i}_" + "x" * 50 for i in range(60)]}  # about 4 KiB
            for i in range(32):
                payload = {"query": FAT, "variables": variables}
                await ws.send(json.dumps({"id": str(i), "type": "subscribe", "payload": payload}))
            await asyncio.sleep(max(0.0, deadline - time.monotonic()))
        elif case == "since":
            since = [{"group": f"note_{i}", "cursor": f"epoch{i}:{i}"} for i in range(50)]
            query = "subscription($s: [SinceInput!]) { events(since: $s) { __typename } }"
            n = 0
            while time.monotonic() < deadline:
                payload = {"query": query, "variables": {"s": since}}
                await ws.send(json.dumps({"id": str(n), "type": "subscribe", "payload": payload}))
                await asyncio.sleep(0.005)
                await ws.send(json.dumps({"id": str(n), "type": "complete"}))
                n += 1
        elif case == "queries":
            queries = [
                "{ sessions { id groups } }",
                f'{{ presence(group: "user_attacker-{case}") {{ sessions }} }}',
            ]
            n = 0
            while time.monotonic() < deadline:
                payload = {"query": queries[n % 2]}
                await ws.send(json.dumps({"id": str(n), "type": "subscribe", "payload": payload}))
                await asyncio.sleep(0.002)
                n += 1
    finally:
        reader.cancel()
        await ws.close()
    return counts


async def loop_lag(server: ServerProcess) -> dict[float, float]:
    """The server's event-loop lag histogram: upper bound (s) -> wake-ups at most that late."""
    async with httpx.AsyncClient() as client:
        text = (await client.get(server.http_url.replace("/graphql", "/metrics"))).text
    buckets = {}
    for line in text.splitlines():
        if line.startswith("switchboard_event_loop_lag_seconds_bucket"):
            bound = line.split('le="')[1].split('"')[0]
            buckets[float("inf") if bound == "+Inf" else float(bound)] = float(line.rsplit(" ", 1)[1])
    return buckets


def lag_figures(before: dict[float, float], after: dict[float, float]) -> dict[str, Any]:
    counts = {bound: after[bound] - before.get(bound, 0) for bound in after}
    total = counts[float("inf")]
    late = {f"over_{int(b * 1000)}ms": int(total - counts[b]) for b in (0.01, 0.025, 0.05, 0.1)}
    worst = min((b for b in sorted(counts) if counts[b] >= total), default=float("inf"))
    return {"wakeups": int(total), **late, "worst_at_most_ms": worst * 1000}


async def measure(server: ServerProcess, case: str, seconds: float) -> dict[str, Any]:

    lag_before = await loop_lag(server)
    bystander = await Bystander.open(server.ws_url)
    attacker = None
    if case != "none":
        attacker = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--attack", case, "--http", server.http_url, "--ws", server.ws_url,
            "--seconds", str(seconds), stdout=subprocess.PIPE,
        )  # fmt: skip
        await asyncio.sleep(0.5)  # the attack is under way before we measure
    await bystander.publish(seconds - 1.0)
    await bystander.close(settle=1.0)
    outcome: dict[str, int] = {}
    if attacker is not None:
        out, _ = await attacker.communicate()
        outcome = json.loads(out or b"{}")
    lag = lag_figures(lag_before, await loop_lag(server))
    return {
        "case": case,
        **bystander.figures(),
        "loop_lag": lag,
        "attacker": outcome,
    }


async def run(seconds: float, cases: list[str]) -> list[dict[str, Any]]:
    redis = RedisServer().start()
    env = {"REDIS_URL": redis.url, "SWITCHBOARD_PREFIX": "stall", "SWITCHBOARD_LOG_LEVEL": "WARNING"}
    server = ServerProcess(env).start()
    os.environ.update(REDIS_URL=redis.url, SWITCHBOARD_PREFIX="stall")  # where send_to_group publishes
    rows = []
    try:
        for case in cases:
            say(f"case {case}")
            row = await measure(server, case, seconds)
            say(json.dumps(row))
            rows.append(row)
    finally:
        server.stop()
        redis.stop()
    return rows


def report(rows: list[dict[str, Any]]) -> None:
    print(
        "| case | bystander p50 ms | p99 ms | max ms | received/sent "
        "| loop wake-ups late >10 / >25 / >50 ms (of all) | attacker's outcomes |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        got, lag = f"{r['received']}/{r['sent']}", r["loop_lag"]
        late = f"{lag['over_10ms']} / {lag['over_25ms']} / {lag['over_50ms']} ({lag['wakeups']})"
        print(
            f"| {r['case']} | {r['p50_ms']} | {r['p99_ms']} | {r['max_ms']} | {got} | {late} | {r['attacker']} |"
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated, from: " + ", ".join(CASES))
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "stall.json"))
    parser.add_argument("--attack", choices=CASES[1:], help=argparse.SUPPRESS)
    parser.add_argument("--http", help=argparse.SUPPRESS)
    parser.add_argument("--ws", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.attack:
        print(json.dumps(asyncio.run(attack(args.attack, args.http, args.ws, args.seconds))))
        return 0
    rows = asyncio.run(run(args.seconds, [c for c in args.cases.split(",") if c]))
    Path(args.out).write_text(json.dumps({"seconds": args.seconds, "rows": rows}, indent=2) + "\n")
    report(rows)
    return 0 if all(r["received"] == r["sent"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
