"""PgQueuer's driver (asyncpg), in the peers' environment.

Enqueues are awaited one after another on one asyncpg connection, in
autocommit, as an async web handler would make them.
"""

import asyncio
import os
import sys
import time

import asyncpg
import psycopg
from pgqueuer import AsyncpgDriver, Queries

from bench.drivers import common
from bench.drivers.pgq_worker import DATABASE

NAME = "pgqueuer"
os.environ["BENCH_STAMPS"] = str(common.DATA / f"stamps-{NAME}.txt")
TABLES = ["pgqueuer", "pgqueuer_log", "pgqueuer_statistics"]


async def queries() -> Queries:
    return Queries(AsyncpgDriver(await asyncpg.connect(common.pg_dsn(DATABASE))))


def setup():
    async def install():
        await (await queries()).install()

    asyncio.run(install())


def reset():
    with psycopg.connect(common.pg_dsn(DATABASE), autocommit=True) as connection:
        connection.execute(f"TRUNCATE {', '.join(TABLES)}")


def worker():
    # PgQueuer's own defaults: batch size 10, no concurrency cap; it wakes on
    # LISTEN/NOTIFY, so it has no poll interval to set.
    return [sys.executable, "-m", "bench.drivers.pgq_worker"]


def enqueue_single(n, *, poll_interval):
    async def run():
        q = await queries()
        for _ in range(common.WARM_UPS):
            await q.enqueue("noop", None)
        started = time.perf_counter()
        for _ in range(n):
            await q.enqueue("noop", None)
        return {"rate": n / (time.perf_counter() - started)}

    reset()
    return asyncio.run(run())


def enqueue_bulk(n, *, poll_interval):
    async def run():
        q = await queries()
        started = time.perf_counter()
        for done in range(0, n, common.BULK_BATCH):
            size = min(common.BULK_BATCH, n - done)
            await q.enqueue(["noop"] * size, [None] * size, [0] * size)
        return {"rate": n / (time.perf_counter() - started)}

    reset()
    return asyncio.run(run())


def drain(n, *, poll_interval):
    async def fill():
        q = await queries()
        for done in range(0, n, common.BULK_BATCH):
            size = min(common.BULK_BATCH, n - done)
            await q.enqueue(["noop"] * size, [None] * size, [0] * size)

    reset()
    asyncio.run(fill())
    with psycopg.connect(common.pg_dsn(DATABASE), autocommit=True) as connection:

        def finished():
            query = "SELECT count(*) FROM pgqueuer_log WHERE status = 'successful'"
            return connection.execute(query).fetchone()[0]

        return common.drain(n, worker(), finished, f"{NAME}-drain")


def latency(n, *, poll_interval):
    loop = asyncio.new_event_loop()
    q = loop.run_until_complete(queries())

    def enqueue(index):
        loop.run_until_complete(q.enqueue("stamp", str(index).encode()))

    reset()
    try:
        return common.latency(n, worker(), enqueue, f"{NAME}-latency")
    finally:
        loop.close()


if __name__ == "__main__":
    common.main(
        setup,
        {
            "enqueue_single": enqueue_single,
            "enqueue_bulk": enqueue_bulk,
            "drain": drain,
            "latency": latency,
        },
    )
