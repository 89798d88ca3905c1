"""Huey's driver (RedisHuey), in the peers' environment, on Redis database 10.

Enqueues are calls of the task, as a view makes them; each is one LPUSH.
"""

import os
import sys

from bench.drivers import common
from bench.drivers.huey_tasks import huey, noop, stamp

NAME = "huey"
os.environ["BENCH_STAMPS"] = str(common.DATA / f"stamps-{NAME}.txt")


def setup():
    reset()


def reset():
    # Only the benchmark's own logical database (see huey_tasks.py).
    huey.storage.conn.flushdb()


def worker():
    # ONE consumer process with 2 worker threads; its other options as default,
    # but SIGTERM (what the benchmark stops every worker with) made its graceful
    # stop: by default huey stops gracefully on SIGINT and at once on SIGTERM.
    consumer = os.path.join(os.path.dirname(sys.executable), "huey_consumer")
    return [
        *(consumer, "bench.drivers.huey_tasks.huey"),
        *("-w", "2", "-k", "thread", "--graceful-signal", "TERM"),
    ]


def enqueue_single(n, *, poll_interval):
    reset()
    return common.enqueue_single(n, noop)


def drain(n, *, poll_interval):
    reset()
    for _ in range(n):  # untimed
        noop()
    # One HLEN of huey's result hash: every finished task stores its (None) result.
    return common.drain(n, worker(), huey.storage.result_store_size, f"{NAME}-drain")


def latency(n, *, poll_interval):
    reset()
    return common.latency(n, worker(), stamp, f"{NAME}-latency")


if __name__ == "__main__":
    common.main(
        setup,
        {"enqueue_single": enqueue_single, "drain": drain, "latency": latency},
    )
