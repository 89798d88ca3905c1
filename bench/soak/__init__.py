"""``python -m bench.soak``: tasks, workers and random SIGKILLs, on each store.

For each store in turn: enqueue --tasks tasks (and, with --duration, more
whenever fewer than half of them wait, for that many seconds), start
--workers ``runtaskworker`` processes, SIGKILL one at random every
--kill-every seconds on average and start a replacement, until every task has
left the queue; then print one line: enqueued, lost, double-recorded,
duplicate executions, kills, time. Exits 1 if any store lost a task or
recorded a result twice. See bench/README.md ("The soak").
"""

import argparse

from bench.drivers.common import pg_dsn, redis_url

STORES = ("sqlite", "postgres", "redis", "pgbouncer")
REDIS_DB_SOAK = 11  # the Redis logical database the soak has to itself, flushed


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument(
        "--stores",
        default="sqlite,postgres,redis",
        help=f"comma-separated, from: {', '.join(STORES)} (default: %(default)s)",
    )
    parser.add_argument("--tasks", type=int, default=10_000, help="default: %(default)s")
    parser.add_argument("--workers", type=int, default=4, help="default: %(default)s")
    parser.add_argument(
        "--kill-every",
        type=float,
        default=3.0,
        metavar="S",
        help="seconds between two SIGKILLs, on average; 0: none (default: %(default)s)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=0,
        metavar="S",
        help="keep enqueueing for S seconds, then drain (default: drain the first --tasks)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=600,
        metavar="S",
        help="give up waiting for the queue to drain after S seconds (default: %(default)s)",
    )
    parser.add_argument("--data-dir", default="bench/.data/soak", help="default: %(default)s")
    parser.add_argument(
        "--postgres",
        default=pg_dsn("bench_soak"),
        metavar="URL",
        help="a PostgreSQL database the soak drops and creates (default: %(default)s)",
    )
    parser.add_argument(
        "--pgbouncer",
        default="postgresql://postgres@127.0.0.1:6432/bench_soak",
        metavar="URL",
        help="that database through PgBouncer, transaction pooling (default: %(default)s)",
    )
    parser.add_argument(
        "--redis",
        default=redis_url(REDIS_DB_SOAK),
        metavar="URL",
        help="a Redis logical database the soak flushes (default: %(default)s)",
    )
    options = parser.parse_args(argv)
    unknown = set(options.stores.split(",")) - set(STORES)
    if unknown:
        parser.error(f"unknown store(s): {', '.join(sorted(unknown))}")
    if options.tasks < 1 or options.workers < 1:
        parser.error("--tasks and --workers must be at least 1")
    return options
