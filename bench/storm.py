"""The reconnect storm: 5000 sessions (graphql-ws clients, each holding a note and resume
cursors as the README says) on two server processes sharing one Redis; both servers restart
while events are published to every note; how long until every session is back in its note
with every missed event, exactly once.

  python bench/storm.py [--n 5000] [--notes 100] [--missed 5]   (writes bench/results/storm.json)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from switchboard.security.auth import mint_token  # noqa: E402
from tests.support.processes import TEST_SECRET, RedisServer, ServerProcess  # noqa: E402

STORM = ROOT / "bench" / "storm"
# One load generator stands in for thousands of browsers: lift the per-address limits.
ENV = {
    "SWITCHBOARD_PREFIX": "storm",
    "SWITCHBOARD_LOG_LEVEL": "WARNING",
    "SWITCHBOARD_CONNECT_BURST": "100000",
    "SWITCHBOARD_CONNECT_RATE": "100000",
    "SWITCHBOARD_MAX_PENDING_PER_ADDRESS": "100000",
    "SWITCHBOARD_MAX_PENDING_CONNECTIONS": "100000",
    "SWITCHBOARD_OPERATION_BURST": "1000",
}


def say(message: str) -> None:
    print(f"[storm {time.strftime('%H:%M:%S')}] {message}", flush=True)


def publish(redis_url: str, notes: int, message: str) -> None:
    code = (
        "from switchboard.publish import send_to_group_sync as s\n"
        f"for n in range({notes}):\n"
        f"    s(f'note_storm{{n}}', 'notify', message='{message}')"
    )
    env = {**os.environ, "REDIS_URL": redis_url, "SWITCHBOARD_PREFIX": "storm"}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=ROOT, timeout=120)


def cpu_seconds(server: ServerProcess) -> float:
    assert server.proc is not None
    fields = Path(f"/proc/{server.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--notes", type=int, default=100)
    parser.add_argument("--missed", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "storm.json"))
    args = parser.parse_args()
    if not (STORM / "node_modules" / "graphql-ws").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=STORM, check=True)
    redis = RedisServer(("--maxclients", "20000")).start()
    env = {**ENV, "REDIS_URL": redis.url}
    servers = [ServerProcess(env).start() for _ in range(2)]
    tokens = ",".join(mint_token(TEST_SECRET, f"storm{i}") for i in range(100))
    storm = subprocess.Popen(
        [
            shutil.which("node") or "node",
            "storm.mjs",
            "--urls",
            ",".join(s.ws_url for s in servers),
            "--tokens",
            tokens,
            "--n",
            str(args.n),
            "--notes",
            str(args.notes),
            "--missed",
            str(args.missed),
        ],
        cwd=STORM,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert storm.stdout is not None and storm.stdin is not None
    try:
        say(f"{args.n} sessions subscribing on {len(servers)} servers")
        assert storm.stdout.readline().strip() == "SUBSCRIBED"
        ready = threading.Event()

        def probe() -> None:  # until every session has seen an event of its note
            for attempt in range(600):
                if ready.is_set():
                    return
                publish(redis.url, args.notes, f"probe-{attempt}")
                time.sleep(0.5)

        prober = threading.Thread(target=probe)
        prober.start()
        line = storm.stdout.readline().strip()
        ready.set()
        prober.join()
        assert line == "READY", line
        say("all subscribed; restarting both servers while the notes get events")
        ports = [s.port for s in servers]
        for server in servers:
            server.stop()
        for i in range(args.missed):
            publish(redis.url, args.notes, f"missed-{i}")
        servers = []
        for port in ports:
            server = ServerProcess(env)
            server.port = port
            servers.append(server)
        storm.stdin.write("GO\n")  # the clock starts as the servers do
        storm.stdin.flush()
        go, up = time.monotonic(), []

        def start(server: ServerProcess) -> None:
            server.start(timeout=180)
            up.append(round(time.monotonic() - go, 2))

        starting = [threading.Thread(target=start, args=(s,)) for s in servers]
        for thread in starting:
            thread.start()
        result = json.loads(storm.stdout.readline())
        for thread in starting:
            thread.join()
        result["servers_up_s"] = sorted(up)
        result["server_cpu_s"] = [round(cpu_seconds(s), 1) for s in servers]  # since they started
    finally:
        storm.kill()
        for server in servers:
            server.stop()
        redis.stop()
    result.update(servers=2, notes=args.notes, missed_per_note=args.missed)
    say(json.dumps(result))
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    ok = result.get("done") == args.n and result.get("duplicates") == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
