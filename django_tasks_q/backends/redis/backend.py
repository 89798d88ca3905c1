"""The queue in Redis, for throughput: same tasks, same worker, no SQL on the hot path.

Every change to the queue is one call of a Redis function from ``redis.lua``,
where the keys are described. Enqueueing from inside a database transaction
waits for the commit (``enqueue_on_commit``): Redis cannot join the
transaction, and a worker must never run a task for a row that was rolled back.
"""

import json
import os
import socket
import threading
import uuid
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path

from django.core import checks
from django.db import Error as DatabaseError
from django.db import transaction
from django.tasks.exceptions import TaskResultDoesNotExist
from django.utils import timezone

try:
    import redis
except ImportError:  # reported by check()
    redis = None

from ...checks import Option, boolean, text
from ..base import DATABASE, LEASE, POLL_INTERVAL, QueueBackend, result_ttl
from ..contract import (
    ClaimedTask,
    EnqueueBatch,
    Outcome,
    QueueStats,
    ResultStatus,
    WorkerEntry,
    last_minutes,
)

SCRIPT = (Path(__file__).parent / "library.lua").read_text()
# "#!lua name=taskq_3": its functions are called "taskq_3_<name>".
LIBRARY = SCRIPT.split("name=", 1)[1].split(None, 1)[0]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ENQUEUE_BATCH = 1000  # calls per function call: bounds how long one blocks the server
OUTBOX_BATCH = 500  # results copied to the database per statement
PURGE_BATCH = 1000  # waiting tasks deleted per function call, for the same reason
EXPIRE_BATCH = 1000  # redis.lua's: tasks one expire call records at most


def _us(value: datetime) -> int:
    """A datetime as the scripts store it: exact integer microseconds."""
    return (value - EPOCH) // timedelta(microseconds=1)


def _datetime(value: str | None) -> datetime | None:
    return EPOCH + timedelta(microseconds=int(value)) if value else None


def _minute(value: datetime) -> int:
    """The minute ``value`` falls in, as the scripts number them: since the epoch."""
    return _us(value) // 60_000_000


def _hash(flat: list[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


class RedisBackend(QueueBackend):
    """The queue in Redis. OPTIONS: see README's "Redis backend"."""

    declared_options = (
        DATABASE,
        POLL_INTERVAL,
        LEASE,
        result_ttl(24 * 60 * 60),
        Option("url", "redis://127.0.0.1:6379/0", text, "django_tasks_q.E007"),
        Option("prefix", "taskq", text),
        # Inside a transaction on ``database``, send tasks when it commits.
        Option("enqueue_on_commit", True, boolean),
        # Also copy finished tasks to the TaskResult table of ``database``.
        Option("record_results_in_database", False, boolean),
    )
    url: str
    enqueue_on_commit: bool
    record_results_in_database: bool

    def __init__(self, alias, params):
        super().__init__(alias, params)
        # One hash tag for every key: a Redis Cluster keeps them in one slot,
        # as functions that touch many keys need.
        self.prefix = "{" + self.prefix + "}"
        self._load_lock = threading.Lock()
        self._library_loaded = False

    @property
    def _ttl(self) -> int:
        """result_ttl as the functions take it: whole seconds, 0 to keep results."""
        if self.result_ttl is None:
            return 0
        return max(1, round(self.result_ttl.total_seconds()))

    @property
    def transient_errors(self):
        # A dropped connection, a restarting server (BusyLoadingError is a
        # ConnectionError), a failover's read-only replica; and the database,
        # which holds the copies of results.
        return (
            redis.ConnectionError,
            redis.TimeoutError,
            redis.exceptions.ReadOnlyError,
            DatabaseError,
        )

    @cached_property
    def client(self):
        # Thread-safe: a pool of connections, each re-opened after a fault.
        return redis.Redis.from_url(self.url, decode_responses=True)

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def _call(self, function: str, *args):
        """Call a function of the library, loading it first when needed."""
        return self._run(lambda: self.client.fcall(f"{LIBRARY}_{function}", 0, self.prefix, *args))

    def _run(self, operation):
        if not self._library_loaded:
            self._load_library()
        try:
            return operation()
        except redis.ResponseError as error:
            # A restarted server without persistence forgets functions; a call
            # that found no function changed nothing, so running it again is safe.
            if "function not found" not in str(error).lower():
                raise
            self._load_library()
            return operation()

    def _load_library(self):
        with self._load_lock:
            self.client.function_load(SCRIPT, replace=True)
            self._library_loaded = True

    # -- the django.tasks API ---------------------------------------------------

    def write(self, batch: EnqueueBatch):
        task = batch.task
        header = [
            task.module_path,
            task.queue_name,
            task.priority,
            batch.max_attempts,
            _us(batch.enqueued_at),
            _us(batch.run_after),
            "" if batch.expires_at is None else _us(batch.expires_at),
        ]
        calls = list(zip(batch.ids, batch.args, batch.kwargs, strict=True))

        def send():
            self._run(lambda: self._send(header, calls))
            self.announce(batch.results)

        if self.enqueue_on_commit:
            # At once outside a transaction; else when (and only if) it commits.
            transaction.on_commit(send, using=self.database)
        else:
            send()
        return batch.results

    def _send(self, header, calls):
        batches = [
            [
                field
                for task_id, args, kwargs in calls[start : start + ENQUEUE_BATCH]
                for field in (task_id, json.dumps(args), json.dumps(kwargs))
            ]
            for start in range(0, len(calls), ENQUEUE_BATCH)
        ]
        if len(batches) == 1:  # one function call is atomic by itself: one reply
            self.client.fcall(f"{LIBRARY}_enqueue", 0, self.prefix, *header, *batches[0])
            return
        # One transaction: a large enqueue_many is all queued or none of it.
        pipeline = self.client.pipeline(transaction=True)
        for fields in batches:
            pipeline.fcall(f"{LIBRARY}_enqueue", 0, self.prefix, *header, *fields)
        pipeline.execute()

    def get_result(self, result_id):
        try:
            task_id = str(uuid.UUID(str(result_id)))
        except ValueError:
            raise TaskResultDoesNotExist(result_id) from None
        fields = self.client.hgetall(self.key("task", task_id))
        if not fields:
            raise TaskResultDoesNotExist(result_id)
        task = self.resolve_task(fields["task_path"], int(fields["priority"]), fields["queue_name"])
        status = fields["status"]
        return_value = fields.get("return_value")
        return self.make_result(
            task=task,
            id=task_id,
            status=status,
            return_value=json.loads(return_value) if return_value else None,
            errors=json.loads(fields["errors"]),
            enqueued_at=_datetime(fields["enqueued_at"]),
            started_at=_datetime(fields.get("started_at")),
            last_attempted_at=_datetime(fields.get("last_attempted_at")),
            finished_at=_datetime(fields.get("finished_at")),
            args=json.loads(fields["args"]),
            kwargs=json.loads(fields["kwargs"]),
            worker_ids=json.loads(fields["worker_ids"]),
            expires_at=_datetime(fields.get("expires_at")),
        )

    def cancel(self, result_id) -> bool:
        return self._cancel(result_id, abort=False) == [1, 0]

    def abort(self, result_id) -> bool:
        return sum(self._cancel(result_id, abort=True)) == 1

    def _cancel(self, result_id, *, abort: bool) -> list[int]:
        try:
            task_id = str(uuid.UUID(str(result_id)))
        except ValueError:
            return [0, 0]
        now = _us(timezone.now())
        outbox = int(self.record_results_in_database)
        counts = self._call("cancel", now, self._ttl, outbox, int(abort), task_id)
        self.copy_results_to_database()
        return counts

    # -- the worker's store -----------------------------------------------------

    def record_and_claim(self, outcomes, queues, limit, worker_id):
        recorded = self._record(outcomes, worker_id) if outcomes else []
        claimed = self._claim(queues, limit, worker_id) if limit > 0 else []
        return recorded, claimed

    def _claim(self, queues, limit, worker_id) -> list[ClaimedTask]:
        now = timezone.now()
        claimed = self._call(
            "claim", _us(now), _us(now + self.lease), limit, worker_id, *(queues or ())
        )
        return [
            self._claimed(task_id, _hash(flat), now)
            for task_id, flat in zip(claimed[::2], claimed[1::2], strict=True)
        ]

    def _claimed(self, task_id, fields, now) -> ClaimedTask:
        return ClaimedTask(
            id=task_id,
            task_path=fields["task_path"],
            queue_name=fields["queue_name"],
            priority=int(fields["priority"]),
            args=json.loads(fields["args"]),
            kwargs=json.loads(fields["kwargs"]),
            attempts=int(fields["attempts"]),
            max_attempts=int(fields["max_attempts"]),
            errors=json.loads(fields["errors"]),
            worker_ids=json.loads(fields["worker_ids"]),
            enqueued_at=_datetime(fields["enqueued_at"]),
            started_at=_datetime(fields["started_at"]),
            last_attempted_at=now,
        )

    def _record(self, outcomes, worker_id) -> list[Outcome]:
        fields = []
        for o in outcomes:
            retry = o.status == Outcome.RETRY
            fields += [
                o.claimed.id,
                o.status,
                "" if retry else json.dumps(o.return_value),
                json.dumps(o.errors),
                _us(o.retry_at if retry else o.finished_at),
            ]
        recorded = set(
            self._call(
                "record",
                worker_id,
                _us(timezone.now()),
                self._ttl,
                int(self.record_results_in_database),
                *fields,
            )
        )
        self.copy_results_to_database()
        return [o for o in outcomes if o.claimed.id in recorded]

    def release(self, task_ids, worker_id) -> None:
        self._call("release", worker_id, _us(timezone.now()), *task_ids)

    def aborts_requested(self, worker_id, task_ids) -> list[str]:
        pipeline = self.client.pipeline(transaction=False)
        for task_id in task_ids:
            pipeline.hmget(self.key("task", task_id), "worker_id", "abort_requested_at")
        return [
            task_id
            for task_id, (holder, requested) in zip(task_ids, pipeline.execute(), strict=True)
            if holder == worker_id and requested
        ]

    def register_worker(self, worker_id, *, queues, concurrency, pool) -> None:
        now = _us(timezone.now())
        entry = self.key("worker", worker_id)
        pipeline = self.client.pipeline(transaction=True)
        pipeline.hset(
            entry,
            mapping={
                "hostname": socket.gethostname(),
                "pid": os.getpid(),
                "backend": self.alias,
                "queues": json.dumps(queues or []),
                "concurrency": concurrency,
                "pool": pool,
                "started_at": now,
                "last_heartbeat_at": now,
            },
        )
        pipeline.pexpire(entry, self._registry_ttl())
        pipeline.zadd(self.key("workers"), {worker_id: now})
        pipeline.execute()

    def _registry_ttl(self) -> int:
        # A worker silent for two leases is gone, as in the database backend.
        return int(2 * self.lease.total_seconds() * 1000)

    def heartbeat(self, worker_id, task_ids) -> bool:
        now = timezone.now()
        alive = self._call(
            "heartbeat",
            worker_id,
            _us(now),
            _us(now + self.lease),
            self._registry_ttl(),
            *task_ids,
        )
        return alive == 1

    def recover(self) -> int:
        now = timezone.now()
        recovered = self._call(
            "recover",
            _us(now),
            self._ttl,
            int(self.record_results_in_database),
            _us(now - 2 * self.lease),
        )
        self.copy_results_to_database()
        return recovered

    def expire_tasks(self) -> int:
        total = 0
        while True:
            args = (_us(timezone.now()), self._ttl, int(self.record_results_in_database))
            expired = self._call("expire", *args)
            self.copy_results_to_database()
            total += expired
            if expired < EXPIRE_BATCH:
                return total

    def prune_results(self, limit=1000) -> int:
        return 0  # results expire by themselves, after result_ttl

    def unregister_worker(self, worker_id) -> None:
        pipeline = self.client.pipeline(transaction=True)
        pipeline.delete(self.key("worker", worker_id))
        pipeline.zrem(self.key("workers"), worker_id)
        pipeline.execute()

    def listen(self, queues, wake, *, worker_id=None, on_abort=None):
        # Here, not at the top: without redis installed, check() says so.
        from .listener import RedisListener

        return RedisListener(
            self.client, self.key("wake"), queues, wake, self.key("abort"), worker_id, on_abort
        ).start()

    # -- how the queue is doing ----------------------------------------------------

    def queue_stats(self, queues=(), *, now=None, buckets=60):
        now = now or timezone.now()
        # An hour of counts for failed_last_hour, and the bars asked for.
        minutes = last_minutes(now, max(buckets, 60))
        reply = self._call("stats", _us(now), _minute(minutes[0]), len(minutes), *queues)
        found = []
        for name, waiting, scheduled, running, oldest, finished in reply:
            counts = [_hash(flat) for flat in finished]
            ok = [int(c.get(ResultStatus.SUCCESSFUL, 0)) for c in counts]
            failed = [
                sum(int(c.get(status, 0)) for status in ResultStatus.FAILURES) for c in counts
            ]
            stats = QueueStats(name, waiting=waiting, scheduled=scheduled, running=running)
            stats.waited_since(_datetime(oldest), now)
            stats.failed_last_hour = sum(failed[-60:])
            stats.throughput = list(zip(minutes, ok, failed, strict=True))[-buckets:]
            stats.finished_last_hour = sum(n + f for _, n, f in stats.throughput)
            # Every queue ever used is known here: show the quiet ones only if configured.
            if name in queues or waiting or scheduled or running or any(ok) or any(failed):
                found.append(stats)
        return sorted(found, key=lambda stats: stats.queue)

    def finished_counts(self, since, now):
        # Counted per minute: the window starts at the start of since's minute.
        keys = [
            (queue, self.key("finished", queue, str(minute)))
            for queue in self.client.smembers(self.key("queues"))
            for minute in range(_minute(since), _minute(now) + 1)
        ]
        pipeline = self.client.pipeline(transaction=False)
        for _, key in keys:
            pipeline.hgetall(key)
        counts = {}
        for (queue, _), by_status in zip(keys, pipeline.execute(), strict=True):
            for status, n in by_status.items():
                counts[queue, status] = counts.get((queue, status), 0) + int(n)
        return counts

    def run_times(self, since, bounds):
        return {}  # Redis keeps no per-task history to measure

    def workers(self, now=None):
        now = now or timezone.now()
        ids = self.client.zrange(self.key("workers"), 0, -1)
        pipeline = self.client.pipeline(transaction=False)
        for worker_id in ids:
            pipeline.hgetall(self.key("worker", worker_id))
        entries = [
            WorkerEntry.seen_at(
                now,
                self.lease,
                id=worker_id,
                hostname=fields["hostname"],
                pid=int(fields["pid"]),
                backend=fields["backend"],
                queues=json.loads(fields["queues"]),
                concurrency=int(fields["concurrency"]),
                pool=fields["pool"],
                started_at=_datetime(fields["started_at"]),
                last_heartbeat_at=_datetime(fields["last_heartbeat_at"]),
            )
            for worker_id, fields in zip(ids, pipeline.execute(), strict=True)
            if fields  # expired: silent for two leases, about to leave the registry
        ]
        return sorted(entries, key=lambda entry: (entry.hostname, entry.started_at))

    def purge(self, queue_name):
        purged = 0
        while True:
            deleted = self._call("purge", queue_name, PURGE_BATCH)
            purged += deleted
            if deleted < PURGE_BATCH:
                return purged

    # -- the database copy of results -------------------------------------------

    def copy_results_to_database(self) -> None:
        """Copy finished tasks from the outbox to the TaskResult table, in batches.

        Popped before they are written: on a database error they are pushed
        back for the next call. Upserts, so a copy made twice is harmless.
        """
        if not self.record_results_in_database:
            return
        outbox = self.key("outbox")
        while ids := self.client.lpop(outbox, OUTBOX_BATCH):
            pipeline = self.client.pipeline(transaction=False)
            for task_id in ids:
                pipeline.hgetall(self.key("task", task_id))
            rows = [
                self._result_row(task_id, fields)
                for task_id, fields in zip(ids, pipeline.execute(), strict=True)
                if fields  # expired already: nothing to copy
            ]
            from ...models import TaskResult  # here: the backend imports without the app

            try:
                TaskResult.objects.using(self.database).bulk_create(
                    rows,
                    update_conflicts=True,
                    unique_fields=["id"],
                    update_fields=[f.name for f in TaskResult._meta.concrete_fields[1:]],
                )
            except DatabaseError:
                self.client.lpush(outbox, *reversed(ids))
                raise
            if len(ids) < OUTBOX_BATCH:
                return

    def _result_row(self, task_id, fields):
        from ...models import TaskResult

        return TaskResult(
            id=task_id,
            task_path=fields["task_path"],
            queue_name=fields["queue_name"],
            priority=int(fields["priority"]),
            status=fields["status"],
            args=json.loads(fields["args"]),
            kwargs=json.loads(fields["kwargs"]),
            return_value=json.loads(fields.get("return_value") or "null"),
            errors=json.loads(fields["errors"]),
            worker_ids=json.loads(fields["worker_ids"]),
            attempts=int(fields["attempts"]),
            enqueued_at=_datetime(fields["enqueued_at"]),
            run_after=_datetime(fields["run_after"]),
            started_at=_datetime(fields.get("started_at")),
            last_attempted_at=_datetime(fields.get("last_attempted_at")),
            finished_at=_datetime(fields["finished_at"]),
        )

    # -- system checks ----------------------------------------------------------

    def check(self, **kwargs):
        messages = super().check(**kwargs)
        if redis is None:
            messages.append(
                checks.Error(
                    f"TASKS[{self.alias!r}] uses {type(self).__name__}, which needs "
                    "the redis package: pip install 'django-tasks-q[redis]'.",
                    id="django_tasks_q.E006",
                )
            )
            return messages
        try:
            redis.ConnectionPool.from_url(self.url)
        except ValueError as error:
            messages.append(
                checks.Error(
                    f"TASKS[{self.alias!r}]['OPTIONS']['url'] is not a Redis URL: {error}",
                    id="django_tasks_q.E007",
                )
            )
        return sorted(messages, key=lambda message: message.id)
