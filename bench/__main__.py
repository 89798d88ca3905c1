"""``python -m bench``: run shared/BENCHMARK.md's workloads and print one table.

Every selected system runs every workload it supports, one workload at a time
across all systems (so the systems compared share the machine's conditions),
and every ratio printed compares figures from this one run.
"""

import argparse
import datetime
import os
import sys

from bench import report
from bench.systems import ALL_WORKLOADS, SYSTEMS, ensure_bytecode, ensure_peers_venv

DEFAULT_N = {
    "enqueue_single": 5_000,
    "enqueue_bulk": 20_000,
    "drain": 20_000,
    "latency": 500,
    "backlog": 20_000,
}

SIZES = ", ".join(f"{w}={n}" for w, n in DEFAULT_N.items())


def parse_arguments():
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--systems",
        default=",".join(s.key for s in SYSTEMS),
        help="comma-separated, from: %(default)s",
    )
    parser.add_argument(
        "--workloads",
        default=",".join(ALL_WORKLOADS),
        help="comma-separated, from: %(default)s (backlog: see --backlog)",
    )
    parser.add_argument(
        "--backlog",
        action="store_true",
        help="also run the backlog workload (PostgreSQL only; builds 6,000,000 rows)",
    )
    parser.add_argument(
        "--n",
        action="append",
        default=[],
        metavar="WORKLOAD=N",
        help=f"change one workload's N (default: BENCHMARK.md's, {SIZES})",
    )
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=0.01,
        help="seconds between an idle polling worker's looks (default: %(default)s)",
    )
    options = parser.parse_args()
    keys = options.systems.split(",")
    unknown = set(keys) - {s.key for s in SYSTEMS}
    workloads = options.workloads.split(",") + (["backlog"] if options.backlog else [])
    unknown |= set(workloads) - set(DEFAULT_N)
    if unknown:
        parser.error(f"unknown: {', '.join(sorted(unknown))}")
    sizes = dict(DEFAULT_N)
    for item in options.n:
        workload, _, n = item.partition("=")
        if workload not in sizes or not n.isdigit():
            parser.error(f"--n {item}: give WORKLOAD=N")
        sizes[workload] = int(n)
    systems = [s for s in SYSTEMS if s.key in keys]
    return systems, workloads, sizes, options.poll_interval


def main():
    systems, workloads, sizes, poll_interval = parse_arguments()
    started = datetime.datetime.now().astimezone()
    load = os.getloadavg()[0]
    if any(s.peer for s in systems):
        ensure_peers_venv()
    ensure_bytecode(systems)

    results: dict[str, dict] = {}
    failures = []
    for system in systems:
        progress(f"preparing {system.key}")
        try:
            system.prepare()
            results[system.key] = {}
        except RuntimeError as error:
            failures.append(f"{system.key}: left out, setup failed: {error}")
    ready = [s for s in systems if s.key in results]
    try:
        for workload in workloads:
            for system in ready:
                if workload not in system.workloads:
                    continue
                n = sizes[workload]
                progress(f"{workload} (N={n:,}) on {system.key}")
                arguments = [workload, str(n), "--poll-interval", str(poll_interval)]
                try:
                    results[system.key][workload] = system.run(*arguments)
                except RuntimeError as error:
                    results[system.key][workload] = "error"
                    failures.append(str(error))
    finally:
        for system in ready:
            system.clean_up()

    rows = [(s, report.summarise(results[s.key])) for s in ready]
    print(
        f"\ndjango-tasks-q benchmark, {started:%Y-%m-%d %H:%M %Z}, {os.cpu_count()} cores, "
        f"load average {load:.2f} at start; N: "
        + ", ".join(f"{w} {sizes[w]:,}" for w in workloads)
        + f"; idle polling workers poll every {poll_interval} s\n"
    )
    print(report.table([(s.name, s.backend, row) for s, row in rows]))
    print()
    for ours, row in rows:
        if ours.peer:
            continue
        print(f"{ours.name} ({ours.backend}):")
        goals = report.TARGET_RATIOS.get(ours.backend, {})
        for peer, peer_row in rows:
            if peer.peer:
                print("  " + report.ratios(row, peer_row, peer.name, goals.get(peer.key, {})))
        for key in sorted(set(goals) - {peer.key for peer, _ in rows}):
            judged = ", ".join(goals[key])
            print(f"  vs {key}: not in this run, so its targets ({judged}) are not judged")
        if absolute := report.targets(row, ours.backend):
            print(f"  {absolute}")
    memory = report.memory([(s.name, s.backend, results[s.key]) for s in ready])
    if memory:
        print("\nWorker resident memory (VmRSS):\n" + memory)
    if failures:
        print("\nFailures:\n" + "\n".join(f"  {f}" for f in failures))


def progress(message: str) -> None:
    print(f"[{datetime.datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
