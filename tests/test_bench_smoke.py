"""The benchmark works end to end with tiny numbers, compressed and not, and nothing is lost (no
timing assertions)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import ROOT


def test_benchmark_smoke_run_loses_nothing(tmp_path: Path) -> None:
    if shutil.which("node") is None:
        pytest.skip("node is not installed: the benchmark's load generator needs it")
    if not (ROOT / "bench" / "loadgen" / "node_modules" / "ws").exists():
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
