"""Fan-out benchmark: Switchboard against Django Channels (both layers) and a websockets floor,
same machine, same run, same messages. Writes bench/results/latest.{json,md,png}.

  python bench/run.py            # the full run (make bench)
  python bench/run.py --smoke    # tiny N, Switchboard and the floor, checks that nothing is lost
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from switchboard.security.auth import mint_token  # noqa: E402
from switchboard.settings import DEVELOPMENT_SECRET  # noqa: E402
from tests.support.processes import RedisServer, free_port  # noqa: E402

BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
MAIN_PY = sys.executable
REF_PY = str(BENCH / ".venv-ref" / "bin" / "python")
NODE = shutil.which("node") or "node"
DEFLATE = "on"  # the load generator offers permessage-deflate as Chromium does (--client-deflate)
CLIENT = "browser"  # whose sockets: bench/loadgen/browser_socket.mjs, or the ws package (--client)
BASE = ""  # a package tree of another revision, served as switchboard-base (--base)


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


@dataclass
class Server:
    name: str
    mode: str  # the load generator's protocol
    publisher: str
    python: str
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0
    env: dict[str, str] = field(default_factory=dict)

    def url(self) -> str:
        path = {
            "channels": "/ws/notify/",
            "graphql": "/graphql",
            "sse": "/graphql",
            "socketio": "/socket.io/?EIO=4&transport=websocket",
        }.get(self.mode, "/")
        return f"ws://127.0.0.1:{self.port}{path}"

    def command(self) -> list[str]:
        if self.name in (
            "switchboard",
            "switchboard-base",
            "switchboard-deflate",
            "switchboard-window",
            "switchboard-sse",
        ):
            return [MAIN_PY, "-m", "switchboard", "serve", "--port", str(self.port)]
        if self.name == "switchboard-2w":  # two workers, no Redis: the local hub between them
            return [MAIN_PY, "-m", "switchboard", "serve", "--port", str(self.port), "--workers", "2"]
        if self.name == "switchboard-uvicorn":
            return [MAIN_PY, "-m", "switchboard", "serve", "--port", str(self.port), "--server", "uvicorn"]
        if self.name.startswith("channels"):
            return [
                REF_PY,
                "-m",
                "uvicorn",
                "bench.peers.channels_peer.asgi:application",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                "--ws",
                "websockets",
            ]
        if self.name in NODE_PEERS:
            script = BENCH / "peers" / "node" / NODE_PEERS[self.name]
            return [NODE, str(script), "--port", str(self.port), "--redis", self.env["REDIS_URL"]]
        return [
            MAIN_PY,
            str(BENCH / "peers" / "floor.py"),
            "--port",
            str(self.port),
            "--redis",
            self.env["REDIS_URL"],
        ]

    def start(self, redis_url: str) -> None:
        self.port = free_port()
        self.env = {
            **os.environ,
            "REDIS_URL": redis_url,
            "SWITCHBOARD_PREFIX": "bench",
            "SWITCHBOARD_QUEUE_SIZE": "4096",
            "SWITCHBOARD_LOG_LEVEL": "WARNING",
            "SWITCHBOARD_MAX_CONNECTIONS": "19000",
            # Every benchmark client comes from 127.0.0.1: one address opening thousands of sockets
            # and SSE streams (browsers would come from as many addresses), past the per-address
            # limits of connections and requests.
            "SWITCHBOARD_HTTP_BURST": "100000",
            "SWITCHBOARD_CONNECT_BURST": "100000",
            "SWITCHBOARD_MAX_PENDING_PER_ADDRESS": "20000",
            "CHANNEL_LAYER": "pubsub" if self.name == "channels-pubsub" else "redis",
            # switchboard-base: the same server from another revision's package tree (--base).
            "PYTHONPATH": f"{BASE}:{ROOT}" if self.name == "switchboard-base" else str(ROOT),
            "SWITCHBOARD_WS_COMPRESSION": {"switchboard-deflate": "1", "switchboard-window": "window"}.get(
                self.name, "0"
            ),
        }
        server_env = self.env
        if self.name == "switchboard-2w":
            # No Redis for the server; the publisher reaches its local hub instead.
            hub_port = free_port()
            server_env = {k: v for k, v in self.env.items() if k != "REDIS_URL"}
            server_env["SWITCHBOARD_HUB_PORT"] = str(hub_port)
            server_env["SWITCHBOARD_HUB_PASSWORD"] = "bench"
            self.env["REDIS_URL"] = f"redis://:bench@127.0.0.1:{hub_port}/0?protocol=2"
        self.proc = subprocess.Popen(
            self.command(), cwd=ROOT, env=server_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        import socket

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    time.sleep(0.5)
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start")

    def pids(self) -> list[int]:
        """The server process and its children (the workers of `--workers N`)."""
        assert self.proc is not None
        found = [self.proc.pid]
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == self.proc.pid:
                    found.append(int(entry.name))
        return found

    def cpu_seconds(self) -> float:
        """User and system CPU time the server's processes have used."""
        total = 0
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def wait_quiet(self, busy: float = 0.15, within: float = 60.0) -> None:
        """Until the server uses less than `busy` of a core over half a second (keepalives and
        the sweeper cost a few percent at 10,000 sessions)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            before = self.cpu_seconds()
            time.sleep(0.5)
            if self.cpu_seconds() - before < busy * 0.5:
                return
        say(f"  {self.name} still busy {within:g} s after the probes: measuring anyway")

    def rss_kb(self) -> int:
        total = 0
        for pid in self.pids():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            total += int(status.split("VmRSS:")[1].split()[0])
        return total

    def counters(self) -> dict[str, float]:
        """Switchboard's compression counters and garbage-collector pauses (seconds, by
        generation) from /metrics; nothing for the other servers."""
        if not self.name.startswith("switchboard"):
            return {}
        url = f"http://127.0.0.1:{self.port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as reply:
            text = reply.read().decode()
        wanted = ("switchboard_ws_compressions_total", "switchboard_ws_compression_reused_total")
        found = {}
        for line in text.splitlines():
            name, _, value = line.rpartition(" ")
            if name in wanted or name.startswith("switchboard_gc_pause_seconds_sum"):
                found[name] = float(value)
        return found

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


# What a JS team picks, in bench/peers/node (its own lock file): published to with a plain Redis
# PUBLISH on the channel each listens to (PEER_CHANNELS), as the floor is.
NODE_PEERS = {"socketio": "socketio.mjs", "node-graphql-ws": "graphql_ws.mjs"}
PEER_CHANNELS = {"floor": "floor:all", "socketio": "socketio:all", "node-graphql-ws": "graphqlws:all"}

SERVERS = {
    "floor": lambda: Server("floor", "floor", "floor", MAIN_PY),
    "socketio": lambda: Server("socketio", "socketio", "floor", MAIN_PY),
    "node-graphql-ws": lambda: Server("node-graphql-ws", "graphql", "floor", MAIN_PY),
    "switchboard": lambda: Server("switchboard", "graphql", "switchboard", MAIN_PY),
    "switchboard-base": lambda: Server("switchboard-base", "graphql", "switchboard", MAIN_PY),
    "switchboard-deflate": lambda: Server("switchboard-deflate", "graphql", "switchboard", MAIN_PY),
    "switchboard-window": lambda: Server("switchboard-window", "graphql", "switchboard", MAIN_PY),
    "switchboard-sse": lambda: Server("switchboard-sse", "sse", "switchboard", MAIN_PY),
    "switchboard-uvicorn": lambda: Server("switchboard-uvicorn", "graphql", "switchboard", MAIN_PY),
    "switchboard-2w": lambda: Server("switchboard-2w", "graphql", "switchboard", MAIN_PY),
    "channels-pubsub": lambda: Server("channels-pubsub", "channels", "channels", REF_PY),
    "channels-redis": lambda: Server("channels-redis", "channels", "channels", REF_PY),
}


def publisher(server: Server, *args: str) -> list[str]:
    group = PEER_CHANNELS.get(server.name, "all")
    return [server.python, str(BENCH / "publisher.py"), "--kind", server.publisher, "--group", group, *args]


def run_one(server: Server, n: int, rate: float, events: int, workload: str) -> dict[str, Any]:
    say(f"{workload}: {server.name}, {n} sessions, {events} events at {rate:g}/s")
    rss_before = server.rss_kb()
    tokens = (
        # Users of at most 50 sockets each, under SWITCHBOARD_MAX_CONNECTIONS_PER_USER (64): W4's
        # 10,000 sockets over 100 users had 36 of every user's refused with 1013.
        ",".join(mint_token(DEVELOPMENT_SECRET, f"{i}") for i in range(max(100, n // 50)))
        if server.mode in ("graphql", "sse")
        else ""
    )
    loadgen = subprocess.Popen(
        [
            NODE,
            str(BENCH / "loadgen" / "loadgen.mjs"),
            "--url",
            server.url(),
            "--mode",
            server.mode,
            "--n",
            str(n),
            "--events",
            str(events),
            "--tokens",
            tokens,
            "--idle",
            "15",
            "--deflate",
            DEFLATE,
            "--client",
            CLIENT,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert loadgen.stdout is not None and loadgen.stdin is not None
    line = loadgen.stdout.readline().strip()
    if not line.startswith("CONNECTED"):
        raise RuntimeError(f"load generator failed: {line} {loadgen.stderr.read() if loadgen.stderr else ''}")
    time.sleep(3.0)  # let allocations settle before reading the idle footprint
    rss_after = server.rss_kb()
    probe = subprocess.Popen(publisher(server, "--probe"), cwd=ROOT, env=server.env, stdin=subprocess.PIPE)
    line = loadgen.stdout.readline().strip()
    assert probe.stdin is not None
    probe.stdin.close()
    probe.wait(10)
    if line != "READY":
        raise RuntimeError(f"sessions never all received a probe: {line}")
    # The probes sent before every session had one are still going out (at W4, 10,000 deliveries
    # each, seconds of them): the measurement starts once the server is quiet, not during them.
    server.wait_quiet()
    loadgen.stdin.write("counting\n")  # the wire bytes are counted from here
    loadgen.stdin.flush()
    abuser = None
    if "noisy" in workload:  # one client hammering the server with what issue 15's attacker sent
        abuser = subprocess.Popen(
            [
                MAIN_PY,
                str(BENCH / "abuser.py"),
                "--url",
                server.url().replace("ws://", "http://"),
                "--token",
                mint_token(DEVELOPMENT_SECRET, "abuser"),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(1.0)
    counters_before = server.counters()  # a scrape costs CPU: outside what is measured
    cpu_before = server.cpu_seconds()
    published = subprocess.run(
        publisher(server, "--rate", str(rate), "--events", str(events)),
        cwd=ROOT,
        env=server.env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    result = json.loads(loadgen.stdout.readline())
    cpu = server.cpu_seconds() - cpu_before
    rss_end = server.rss_kb()  # before the load generator closes its sockets
    counters = {k: v - counters_before.get(k, 0) for k, v in server.counters().items()}
    loadgen.wait(30)
    abused = None
    if abuser is not None:
        abuser.send_signal(signal.SIGINT)
        out, _ = abuser.communicate(timeout=30)
        abused = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
    result.update(
        server=server.name,
        workload=workload,
        rate=rate,
        publisher=json.loads(published.stdout or "{}"),
        rss_before_kb=rss_before,
        rss_after_kb=rss_after,
        rss_per_connection_kb=(rss_after - rss_before) / n,
        rss_after_traffic_kb=rss_end,
        rss_after_traffic_per_connection_kb=(rss_end - rss_before) / n,
        cpu_s=cpu,
        cpu_ms_per_1000_deliveries=1e6 * cpu / result["deliveries"] if result["deliveries"] else None,
        client_deflate=DEFLATE == "on",
        client=CLIENT,
        abuser=abused,
        # zlib calls per delivery while the events went out (window mode's contexts: ws/contexts.py)
        compressions_per_delivery=(
            counters.get("switchboard_ws_compressions_total", 0) / result["deliveries"]
            if counters and result["deliveries"]
            else None
        ),
        # the garbage collector's pauses while the events went out, by generation
        gc_pause_s={
            k.partition('generation="')[2].rstrip('"}'): v for k, v in counters.items() if "gc_pause" in k
        },
    )
    say(
        f"  {result['deliveries_per_s'] or 0:,.0f} deliveries/s, p50 {1000 * (result['latency_s']['p50'] or 0):.1f} ms,"
        f" p99 {1000 * (result['latency_s']['p99'] or 0):.1f} ms, lost {result['lost']},"
        f" {result['rss_per_connection_kb']:.1f} KB/connection idle,"
        f" {result['rss_after_traffic_per_connection_kb']:.1f} after, {result['cpu_ms_per_1000_deliveries'] or 0:.0f} ms CPU"
        f" per 1000 deliveries, {result['wire_bytes_per_delivery'] or 0:.0f} B/delivery on the wire ({result['extensions']})"
        + (
            f", {result['compressions_per_delivery']:.3f} compressions per delivery"
            if result["compressions_per_delivery"] is not None
            else ""
        )
    )
    return result


Run = tuple[str, str, int, float, int]
"""(workload, server, N, rate, events)"""


def plan(smoke: bool, sizes: list[int], workloads: set[str], w1_rate: float = 200) -> list[Run]:
    if smoke:
        # switchboard-window: 30 compressed events, the first 16 standalone and the rest referring
        # back to them, which the load generator's sockets must inflate as a browser does.
        return [("smoke", s, 20, 50, 30) for s in ("switchboard", "switchboard-window", "floor")]
    servers = [
        "floor",
        "socketio",
        "node-graphql-ws",
        "switchboard",
        "switchboard-deflate",
        "switchboard-window",
        "switchboard-uvicorn",
        "channels-pubsub",
        "channels-redis",
    ]
    runs: list[Run] = []
    if BASE:
        servers.insert(servers.index("switchboard") + 1, "switchboard-base")
    if "W1" in workloads:
        # 5 s of events at w1_rate: a server that keeps up delivers the offered rate, so W1 is
        # offered more than the fastest server takes (--w1-rate) to measure its ceiling.
        w1 = ("W1 saturation", w1_rate, int(w1_rate * 5))
        runs += [(w1[0], s, n, w1[1], w1[2]) for s in servers for n in sizes]
        # --workers 2 on the embedded default (the local hub) beside one worker: on two cores the
        # load generator shares them, so this says what a second worker costs and gives here.
        runs += [(w1[0], "switchboard-2w", n, w1[1], w1[2]) for n in sizes]
    if "W2" in workloads:
        # 150 events, so that one slow event (1000 deliveries) is under 1% of the samples of p99.
        runs += [("W2 moderate", s, 1000, 5, 150) for s in servers]
    if "W2noisy" in workloads:
        # W2 with a noisy neighbour: the bystanders' p99 should stay within 2x of W2's.
        runs += [("W2 noisy neighbour", s, 1000, 5, 150) for s in ("switchboard",)]
    if "W3" in workloads:
        # Idle subscribed sessions (RSS before the events), then after 200 events.
        runs += [("W3 memory", s, 2000, 10, 200) for s in servers]
    if "SSE" in workloads:
        # Subscriptions over HTTP: 1000 SSE streams beside the same over WebSocket, 40k deliveries/s
        # asked (below the load generator's own saturation on two cores, where the client lags).
        runs += [("SSE streams", s, 1000, 40, 400) for s in ("switchboard-sse", "switchboard")]
    if "W4" in workloads:
        runs += [
            ("W4 scale", s, 10_000, 2, 10)
            for s in ("switchboard", "switchboard-deflate", "switchboard-window", "switchboard-uvicorn")
        ]
    return runs


def interleaved(runs: list[Run], repeat: int) -> list[list[Run]]:
    """The runs of each workload and size, `repeat` times over in turn: whatever drifts on the
    machine during a group (another tenant, the CPU's clock) falls on every server alike."""
    groups: dict[tuple[str, int], list[Run]] = {}
    for run in runs:
        groups.setdefault((run[0], run[2]), []).append(run)
    return [group * repeat for group in groups.values()]


def medians(measured: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each server's run with the median CPU per delivery (the lower middle of an even count),
    with every run's key figures under `repeats`; a server run once is left as it is."""
    by_server: dict[str, list[dict[str, Any]]] = {}
    for result in measured:
        by_server.setdefault(result["server"], []).append(result)
    picked = []
    for results in by_server.values():
        if len(results) == 1:
            picked.append(results[0])
            continue
        ordered = sorted(results, key=lambda r: r["cpu_ms_per_1000_deliveries"] or 0)
        median = dict(ordered[(len(ordered) - 1) // 2])
        median["repeats"] = [
            {key: r[key] for key in REPEATED} | {"p99_s": r["latency_s"]["p99"]} for r in results
        ]
        picked.append(median)
    return picked


REPEATED = ("cpu_ms_per_1000_deliveries", "deliveries_per_s", "lost", "wire_bytes_per_delivery")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--sizes", default="100,1000", help="session counts of the W1 sweep")
    parser.add_argument("--workloads", default="W1,W2,W3,W4,SSE")
    parser.add_argument(
        "--w1-rate",
        type=float,
        default=200,
        help="W1's offered events/s (to every subscriber): above what the fastest server delivers",
    )
    parser.add_argument(
        "--merge", action="store_true", help="replace these workloads in the existing results"
    )
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--only", help="comma-separated servers")
    parser.add_argument(
        "--base",
        default="",
        help="a package tree of another revision (a folder holding switchboard/, e.g. made by"
        " bench/base_tree.sh REV): its server runs beside this one as switchboard-base",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run each workload's servers this many times, in turn (A B A B ...), and report each"
        " server's median run by CPU per delivery, every run's figures beside it",
    )
    parser.add_argument(
        "--client-deflate",
        choices=["on", "off"],
        default="on",
        help="whether the load generator offers permessage-deflate as browsers do (on: every browser)",
    )
    parser.add_argument(
        "--client",
        choices=["browser", "ws"],
        default="browser",
        help="the load generator's sockets: inflated as a browser does (browser), or by the ws package",
    )
    args = parser.parse_args()
    global DEFLATE, CLIENT, BASE
    DEFLATE = args.client_deflate
    CLIENT = args.client
    BASE = args.base
    runs = plan(
        args.smoke, [int(n) for n in args.sizes.split(",")], set(args.workloads.split(",")), args.w1_rate
    )
    if args.only:
        runs = [r for r in runs if r[1] in args.only.split(",")]
    if any(r[1].startswith("channels") for r in runs) and not Path(REF_PY).exists():
        say("the reference virtualenv is missing: make bench-venv")
        return 2
    redis = RedisServer(("--maxclients", "20000")).start()
    say(f"redis-server on port {redis.port}")
    results: list[dict[str, Any]] = []
    try:
        for group in interleaved(runs, args.repeat):
            measured: list[dict[str, Any]] = []
            for workload, name, n, rate, events in group:
                server = SERVERS[name]()
                server.start(redis.url)
                try:
                    measured.append(run_one(server, n, rate, events, workload))
                finally:
                    server.stop()
            results += medians(measured)
    finally:
        redis.stop()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "smoke" if args.smoke else "latest"
    machine = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "node": subprocess.run([NODE, "--version"], capture_output=True, text=True).stdout.strip(),
    }
    if args.merge and (out / f"{stem}.json").exists():
        done = {(r["workload"], r["server"], r["n"]) for r in results}
        earlier = json.loads((out / f"{stem}.json").read_text())["runs"]
        results = [r for r in earlier if (r["workload"], r["server"], r["n"]) not in done] + results
    # In the tables' order (runs were taken by row group: every server at one size in turn).
    order = ["W1 saturation", "W2 moderate", "W2 noisy neighbour", "W3 memory", "W4 scale", "SSE streams"]
    names = list(SERVERS)
    results.sort(
        key=lambda r: (
            order.index(r["workload"]) if r["workload"] in order else len(order),
            names.index(r["server"]) if r["server"] in names else len(names),
            r["n"],
        )
    )
    (out / f"{stem}.json").write_text(json.dumps({"machine": machine, "runs": results}, indent=2))
    from bench.report import markdown, plot

    (out / f"{stem}.md").write_text(markdown(results, machine))
    if not args.smoke:
        plot(results, out / f"{stem}.png")
    say(f"wrote {out / stem}.json, .md" + ("" if args.smoke else ", .png"))
    lost = sum(
        sum(repeat["lost"] for repeat in r.get("repeats", [r]))
        for r in results
        if r["server"] == "switchboard"
    )
    if lost:
        say(f"Switchboard lost {lost} deliveries")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
