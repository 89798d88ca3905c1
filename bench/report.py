"""Turning the drivers' figures into the printed table and ratios."""

import math

# The targets of shared/BENCHMARK.md, per backend of this project: throughput
# as a ratio to a peer (by its --systems key), latency in milliseconds.
TARGET_RATIOS = {
    "PostgreSQL": {"pgqueuer": {"enqueue_single": 1.2, "enqueue_bulk": 1.5, "drain": 2.0}},
    "Redis": {"huey": {"enqueue_single": 1.0, "drain": 2.0}, "pgqueuer": {"enqueue_bulk": 1.5}},
}
TARGET_LATENCY_MS = {
    "PostgreSQL": {"p50": 2.0, "p99": 10.0},
    "Redis": {"p50": 1.0, "p99": 5.0},
}
TARGET_BACKLOG = 0.9

COLUMNS = [
    ("enqueue_single", "enqueue_single/s"),
    ("enqueue_bulk", "enqueue_bulk/s"),
    ("drain", "drain/s"),
    ("p50", "p50 ms"),
    ("p95", "p95 ms"),
    ("p99", "p99 ms"),
    ("backlog_ratio", "backlog ratio"),
]


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (0-100), interpolating between the two nearest ranks."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarise(results: dict[str, dict]) -> dict[str, float | str]:
    """One table row from a system's workload results (figures, or an error string)."""
    row: dict[str, float | str] = {}
    for workload, figures in results.items():
        if isinstance(figures, str):
            names = ["p50", "p95", "p99"] if workload == "latency" else [workload]
            row.update(dict.fromkeys(names, "error"))
        elif workload == "latency":
            for p in (50, 95, 99):
                row[f"p{p}"] = percentile(figures["latencies_ms"], p)
        elif workload == "backlog":
            plain = results.get("drain")
            if isinstance(plain, dict):
                row["backlog_ratio"] = figures["rate"] / plain["rate"]
            row["backlog/s"] = figures["rate"]
        else:
            row[workload] = figures["rate"]
    return row


def cell(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, str):
        return value
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def table(rows: list[tuple[str, str, dict]]) -> str:
    header = ["system", "backend", *(title for _, title in COLUMNS)]
    lines = [header] + [
        [name, backend, *(cell(row.get(key)) for key, _ in COLUMNS)] for name, backend, row in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for number, line in enumerate(lines):
        out.append(
            "| "
            + " | ".join(
                text.ljust(w) if i < 2 else text.rjust(w)
                for i, (text, w) in enumerate(zip(line, widths, strict=True))
            )
            + " |"
        )
        if number == 0:
            out.append(
                "|"
                + "|".join("-" * (w + 1) + (":" if i >= 2 else "-") for i, w in enumerate(widths))
                + "|"
            )
    return "\n".join(out)


def ratios(ours: dict, peer: dict, peer_name: str, targets: dict[str, float]) -> str:
    """``ours`` against one peer, throughput by throughput, with the targets
    (workload: lowest ratio) that apply against this peer."""
    parts = []
    for workload in ("enqueue_single", "enqueue_bulk", "drain"):
        a, b = ours.get(workload), peer.get(workload)
        if isinstance(a, float) and isinstance(b, float):
            text = f"{workload} {a / b:.2f}x"
            if workload in targets:
                goal = targets[workload]
                text += f" (target >= {goal}x: {'met' if a / b >= goal else 'NOT met'})"
            parts.append(text)
    return f"vs {peer_name}: " + ("; ".join(parts) if parts else "nothing to compare")


def targets(row: dict, backend: str) -> str:
    """The absolute targets of ``backend``: latency, and the backlog ratio."""
    parts = []
    for key, limit in TARGET_LATENCY_MS.get(backend, {}).items():
        if isinstance(row.get(key), float):
            met = "met" if row[key] <= limit else "NOT met"
            parts.append(f"{key} {row[key]:.2f} ms (target <= {limit} ms: {met})")
    if isinstance(row.get("backlog_ratio"), float):
        met = "met" if row["backlog_ratio"] >= TARGET_BACKLOG else "NOT met"
        parts.append(f"backlog {row['backlog_ratio']:.2f}x (target >= {TARGET_BACKLOG}x: {met})")
    return "; ".join(parts)


def memory(rows: list[tuple[str, str, dict]]) -> str:
    """Worker RSS: idle (latency workload, before it starts) and after the drain."""
    lines = []
    for name, backend, results in rows:
        idle = results.get("latency", {})
        drained = results.get("drain", {})
        idle_kb = idle.get("rss_idle_kb") if isinstance(idle, dict) else None
        drained_kb = drained.get("rss_after_drain_kb") if isinstance(drained, dict) else None
        if idle_kb or drained_kb:
            lines.append(
                f"  {name} ({backend}): idle {mib(idle_kb)}, after drain {mib(drained_kb)}"
            )
    return "\n".join(lines)


def mib(kb) -> str:
    return "n/a" if kb is None else f"{kb / 1024:.1f} MiB"
