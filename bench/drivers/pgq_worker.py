"""PgQueuer's worker for the benchmark: ``python -m bench.drivers.pgq_worker``.

It does what ``pgq run bench.drivers.pgq_worker:create`` does, with PgQueuer's
defaults, through ``pgqueuer.run``: the ``pgq run`` command of pgqueuer 1.6.0
fails at start-up here ("'str' object has no attribute 'name'" while setting up
its logging).
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from pgqueuer import AsyncpgDriver, PgQueuer, run
from pgqueuer.models import Job

from bench.drivers.common import database_name, pg_dsn, record_start

DATABASE = database_name("pgqueuer")


@asynccontextmanager
async def create() -> AsyncIterator[PgQueuer]:
    connection = await asyncpg.connect(pg_dsn(DATABASE))
    pgq = PgQueuer(AsyncpgDriver(connection))

    @pgq.entrypoint("noop")
    async def noop(job: Job) -> None:
        return None

    @pgq.entrypoint("stamp")
    async def stamp(job: Job) -> None:
        record_start(int(job.payload))

    try:
        yield pgq
    finally:
        await connection.close()


if __name__ == "__main__":
    asyncio.run(run(create))
