"""Huey's application for the benchmark: what ``huey_consumer`` imports.

``huey_consumer bench.drivers.huey_tasks.huey -w 2 -k thread``. RedisHuey with
its defaults (blocking BRPOP, so an idle consumer wakes at once), except
``store_none``: a no-op returns None, which huey stores only when asked, and
the drain counts stored results.
"""

from huey import RedisHuey

from bench.drivers.common import REDIS_DB_HUEY, record_start, redis_url

huey = RedisHuey("bench", url=redis_url(REDIS_DB_HUEY), store_none=True)


@huey.task()
def noop(*args):
    return None


@huey.task()
def stamp(index):
    record_start(index)
