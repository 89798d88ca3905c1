"""django-tasks-q's driver: the project's own environment, its own worker command.

BENCH_DATABASE=sqlite runs it on SQLite, BENCH_QUEUE=redis with the Redis
backend, otherwise on PostgreSQL (see bench/sites/taskq/settings.py).
"""

import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.sites.taskq.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.tasks import task_backends  # noqa: E402
from django.utils import timezone  # noqa: E402

from bench.drivers import common  # noqa: E402
from bench.sites.taskq.tasks import noop, stamp  # noqa: E402
from django_tasks_q.models import TaskResult  # noqa: E402

REDIS = settings.REDIS_QUEUE
NAME = "taskq-redis" if REDIS else f"taskq-{connection.vendor}"
os.environ["BENCH_STAMPS"] = str(common.DATA / f"stamps-{NAME}.txt")
TABLES = ["django_tasks_q_task", "django_tasks_q_taskresult", "django_tasks_q_worker"]

# The backlog's rows, made by the database: ids shaped like the UUIDv7 the
# project writes (48-bit millisecond timestamp, version 7, variant 10), one
# millisecond apart, so they sort by time as real ones do.
ROWS = """
    SELECT (lpad(to_hex(s.ms), 12, '0') || '7' || substr(s.h, 1, 3) || '8'
            || substr(s.h, 4, 15))::uuid AS id,
           to_timestamp(s.ms / 1000.0) AS at
    FROM (SELECT %(first_ms)s + i AS ms, md5(%(salt)s || i) AS h
          FROM generate_series(1, %(count)s) AS i) AS s
"""
WAITING = f"""
    INSERT INTO django_tasks_q_task
        (id, task_path, queue_name, priority, status, args, kwargs, run_after,
         enqueued_at, attempts, max_attempts, errors, worker_ids)
    SELECT r.id, %(task_path)s, 'default', 0, 'READY', '[]', '{{}}', r.at, r.at,
           0, 1, '[]', '[]'
    FROM ({ROWS}) AS r
"""
HISTORY = f"""
    INSERT INTO django_tasks_q_taskresult
        (id, task_path, queue_name, priority, status, args, kwargs, return_value,
         errors, worker_ids, attempts, enqueued_at, run_after, started_at,
         last_attempted_at, finished_at)
    SELECT r.id, %(task_path)s, 'default', 0, 'SUCCESSFUL', '[]', '{{}}', NULL,
           '[]', '["bench-history"]', 1, r.at, r.at, r.at, r.at,
           r.at + interval '1 millisecond'
    FROM ({ROWS}) AS r
"""
BACKLOG_WAITING = 1_000_000
BACKLOG_HISTORY = 5_000_000


def setup():
    call_command("migrate", verbosity=0)
    if REDIS:
        reset()


def reset():
    if REDIS:
        # Only the benchmark's own logical database (see settings.py).
        task_backends["default"].client.flushdb()
        return
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"TRUNCATE {', '.join(TABLES)}")
        else:
            for table in TABLES:
                cursor.execute(f"DELETE FROM {table}")


def queue(n):
    for done in range(0, n, common.BULK_BATCH):
        noop.enqueue_many([()] * min(common.BULK_BATCH, n - done))


def worker(poll_interval):
    return [
        *(sys.executable, "-m", "django", "runtaskworker"),
        *("--concurrency", "2", "--poll-interval", str(poll_interval)),
    ]


def redis_finished(n):
    """How many of ``n`` queued tasks are finished, from three ZCARDs.

    A task leaves the ready, scheduled and running sets only in the Lua
    function that records its outcome, in the same atomic call that stores its
    result, so with no retries (noop) this is exactly the number of results.
    ``check_redis_results`` confirms it after the drain, untimed.
    """
    backend = task_backends["default"]
    pipeline = backend.client.pipeline(transaction=False)
    for key in ("ready:default", "scheduled:default", "running"):
        pipeline.zcard(backend.key(*key.split(":")))
    return n - sum(pipeline.execute())


def check_redis_results(n):
    """Untimed: every one of the ``n`` task hashes says SUCCESSFUL."""
    backend = task_backends["default"]
    successful = 0
    pipeline = backend.client.pipeline(transaction=False)
    # A pipeline per 10,000 keys: the memory workload's 1,000,000 in one would
    # take the driver's memory by the gigabyte.
    for key in backend.client.scan_iter(backend.key("task", "*"), count=1000):
        pipeline.hget(key, "status")
        if len(pipeline) == 10_000:
            successful += pipeline.execute().count("SUCCESSFUL")
    successful += pipeline.execute().count("SUCCESSFUL")
    if successful != n:
        raise RuntimeError(f"{successful} successful results in Redis, not {n}")


def finished(since=None):
    results = TaskResult.objects.all()
    if since is not None:
        results = results.filter(finished_at__gte=since)
    return results.count()


def enqueue_single(n, *, poll_interval):
    reset()
    connection.ensure_connection()
    return common.enqueue_single(n, noop.enqueue)


def enqueue_bulk(n, *, poll_interval):
    reset()
    connection.ensure_connection()
    return common.enqueue_bulk(n, lambda size: noop.enqueue_many([()] * size))


def drain(n, *, poll_interval):
    reset()
    queue(n)
    if REDIS:
        figures = common.drain(n, worker(poll_interval), lambda: redis_finished(n), f"{NAME}-drain")
        check_redis_results(n)
        return figures
    return common.drain(n, worker(poll_interval), finished, f"{NAME}-drain")


def memory(n, *, poll_interval):
    """The worker's RSS over a drain of ``n`` (issue #16: flat over 1,000,000)."""
    reset()
    queue(n)
    count = (lambda: redis_finished(n)) if REDIS else finished
    figures = common.memory(n, worker(poll_interval), count, f"{NAME}-memory")
    if REDIS:
        check_redis_results(n)
    reset()  # a million results would otherwise stay (in Redis: about 0.5 GB, for a day)
    return figures


def latency(n, *, poll_interval):
    reset()
    return common.latency(n, worker(poll_interval), stamp.enqueue, f"{NAME}-latency")


def backlog(n, *, poll_interval):
    """Drain the first ``n`` of 1,000,000 waiting tasks, over 5,000,000 finished ones."""
    reset()
    now_ms = int(timezone.now().timestamp() * 1000)
    with connection.cursor() as cursor:
        for statement, count, first_ms, salt in [
            (HISTORY, BACKLOG_HISTORY, now_ms - 10_000_000, "h"),
            (WAITING, BACKLOG_WAITING, now_ms - 2_000_000, "w"),
        ]:
            params = {"count": count, "first_ms": first_ms, "salt": salt}
            cursor.execute(statement, {**params, "task_path": noop.module_path})
        # As autovacuum would have done by the time a queue gets this big.
        cursor.execute(f"VACUUM ANALYZE {', '.join(TABLES)}")
    since = timezone.now()
    figures = common.drain(n, worker(poll_interval), lambda: finished(since), f"{NAME}-backlog")
    reset()
    return figures


if __name__ == "__main__":
    common.main(
        setup,
        {
            "enqueue_single": enqueue_single,
            "enqueue_bulk": enqueue_bulk,
            "drain": drain,
            "latency": latency,
            "backlog": backlog,
            "memory": memory,
        },
    )
