"""Tables and plots of benchmark runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{1000 * value:.1f}"


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _extension(value: str | None) -> str:
    if not value:
        return "none"
    if "server_no_context_takeover" in value:
        return "deflate, no context takeover"
    if "client_no_context_takeover" in value:
        return "deflate, server context only"
    return "deflate, context takeover"


def _cpu(run: dict[str, Any]) -> str:
    """CPU per 1000 deliveries; of a repeated run, the median with the range of every run."""
    median = _num(run.get("cpu_ms_per_1000_deliveries"), 0)
    repeats = [r["cpu_ms_per_1000_deliveries"] or 0 for r in run.get("repeats", [])]
    return f"{median} ({min(repeats):.0f}-{max(repeats):.0f} in {len(repeats)})" if repeats else median


def markdown(runs: list[dict[str, Any]], machine: dict[str, Any]) -> str:
    lines = [
        f"Machine: {machine['cpus']} cores, Python {machine['python']}, Node {machine['node']}, {machine['platform']}.",
        "",
        "Clients offer permessage-deflate as Chromium does"
        + (
            ""
            if all(r.get("client_deflate", False) for r in runs)
            else " (except where the extension column is `-` and noted)"
        )
        + "; `extension` is what the server answered."
        + (
            " A CPU figure with a range is the median of runs taken in turn with the other"
            " servers of its row group (`--repeat`); the row is that median run."
            if any("repeats" in r for r in runs)
            else ""
        ),
        "",
        "| workload | server | sessions | offered events/s | deliveries/s | p50 ms | p99 ms | lost "
        "| RSS/conn KB idle | RSS/conn KB after | CPU ms / 1000 deliveries | wire B / delivery | extension |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in runs:
        lat = r["latency_s"]
        lines.append(
            f"| {r['workload']} | {r['server']} | {r['n']:,} | {r['rate']:g} | {r['deliveries_per_s'] or 0:,.0f} | "
            f"{_ms(lat['p50'])} | {_ms(lat['p99'])} | {r['lost']} | {r['rss_per_connection_kb']:.1f} | "
            f"{_num(r.get('rss_after_traffic_per_connection_kb'))} | {_cpu(r)} | "
            f"{_num(r.get('wire_bytes_per_delivery'), 0)} | {_extension(r.get('extensions'))} |"
        )
    return "\n".join(lines) + "\n"


def plot(runs: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweep = [r for r in runs if r["workload"].startswith("W1")]
    servers = sorted({r["server"] for r in sweep})
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for i, name in enumerate(servers):
        color = f"C{i}"  # one colour per server in both panels; p50 dashed, p99 solid
        points = sorted((r for r in sweep if r["server"] == name), key=lambda r: r["n"])
        ns = [r["n"] for r in points]
        left.plot(ns, [r["deliveries_per_s"] or 0 for r in points], marker="o", color=color, label=name)
        right.plot(
            ns,
            [1000 * (r["latency_s"]["p50"] or 0) for r in points],
            marker="o",
            linestyle="--",
            color=color,
            label=f"{name} p50",
        )
        right.plot(
            ns,
            [1000 * (r["latency_s"]["p99"] or 0) for r in points],
            marker="s",
            color=color,
            label=f"{name} p99",
        )
    left.set(title="Throughput at 200 events/s offered", xlabel="subscribed sessions", ylabel="deliveries/s")
    right.set(title="Publish-to-receipt latency", xlabel="subscribed sessions", ylabel="ms", yscale="log")
    left.legend()
    right.legend(fontsize=7)
    left.grid(alpha=0.3)
    right.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
