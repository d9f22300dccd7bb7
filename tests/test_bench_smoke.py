"""The benchmark works end to end with tiny numbers, compressed and not, and nothing is lost (no
timing assertions)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.run import interleaved, medians
from tests.support.processes import ROOT


def test_benchmark_smoke_run_loses_nothing(tmp_path: Path) -> None:
    if shutil.which("node") is None:
        pytest.skip("node is not installed: the benchmark's load generator needs it")
    if not all((ROOT / "bench" / "loadgen" / "node_modules" / m).exists() for m in ("ws", "pako")):
        subprocess.run(
            ["npm", "ci", "--prefix", "bench/loadgen", "--no-audit", "--no-fund"],
            cwd=ROOT,
            check=True,
            capture_output=True,
            timeout=300,
        )
    done = subprocess.run(
        [sys.executable, "bench/run.py", "--smoke", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp_path / "smoke.json").read_text())
    runs = {r["server"]: r for r in report["runs"]}
    assert set(runs) == {"switchboard", "switchboard-window", "floor"}
    # Offered deflate as a browser does: declined by default, negotiated when compression is on.
    assert runs["switchboard"]["extensions"] is None
    assert (runs["switchboard-window"]["extensions"] or "").startswith("permessage-deflate")
    for run in runs.values():
        assert run["deliveries"] == run["n"] * run["events"] and run["lost"] == 0 and run["duplicates"] == 0
        assert run["latency_s"]["p50"] is not None
    assert "| smoke | switchboard |" in (tmp_path / "smoke.md").read_text()


def test_repeated_runs_take_turns_and_each_server_reports_its_median_run() -> None:
    a, b = ("W1 saturation", "a", 1000, 200.0, 1000), ("W1 saturation", "b", 1000, 200.0, 1000)
    small, other = ("W1 saturation", "a", 100, 200.0, 1000), ("W2 moderate", "a", 1000, 5.0, 150)
    assert interleaved([a, b, small, other], 3) == [[a, b] * 3, [small] * 3, [other] * 3]

    def result(server: str, cpu: float, lost: int = 0) -> dict[str, object]:
        return {
            "server": server,
            "cpu_ms_per_1000_deliveries": cpu,
            "deliveries_per_s": 1e6 / cpu,
            "lost": lost,
            "wire_bytes_per_delivery": 29,
            "latency_s": {"p99": cpu / 100},
        }

    picked = medians(
        [result("a", 30), result("b", 5), result("a", 10, lost=2), result("b", 7), result("a", 20)]
    )
    by_server = {r["server"]: r for r in picked}
    assert by_server["a"]["cpu_ms_per_1000_deliveries"] == 20
    assert [r["cpu_ms_per_1000_deliveries"] for r in by_server["a"]["repeats"]] == [
        30,
        10,
        20,
    ]  # in run order
    assert [r["lost"] for r in by_server["a"]["repeats"]] == [0, 2, 0]  # a loss in any run is kept
    assert by_server["b"]["cpu_ms_per_1000_deliveries"] == 5  # the lower middle of two
    assert medians([result("c", 9)]) == [result("c", 9)]  # once: as it was, no repeats
