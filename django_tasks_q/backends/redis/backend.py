"""The queue in Redis, for throughput: same tasks, same worker, no SQL on the hot path.

Every change to the queue is one call of a Redis function from ``library.lua``
(where the keys are described), through its wrapper in ``library.py``.
Enqueueing from inside a database transaction waits for the commit
(``enqueue_on_commit``): Redis cannot join the transaction, and a worker must
never run a task for a row that was rolled back.
"""

import json
import os
import socket
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import cached_property
from importlib.util import find_spec
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from django.core import checks
from django.db import Error as DatabaseError
from django.db import transaction
from django.utils import timezone

from ...checks import Option, boolean, text
from ...compat import TaskResultDoesNotExist
from ...exceptions import QueueUnavailable
from ...limits import parse_rate
from ..base import (
    TRANSIENT_DATABASE_ERRORS,
    QueueBackend,
    deferred_to,
    result_ttl,
)
from ..contract import (
    ClaimedTask,
    EnqueueBatch,
    Outcome,
    QueueStats,
    ResultStatus,
    WorkerEntry,
    last_minutes,
    stored_errors,
)

# Without the redis package the backend still imports: check() reports it.
REDIS_INSTALLED = find_spec("redis") is not None
if REDIS_INSTALLED:
    import redis
    from redis.cluster import RedisCluster

    from .library import EnqueueCall, Fields, Library

if TYPE_CHECKING:
    from ...models import TaskResult

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
OUTBOX_BATCH = 500  # results copied to the database per statement
PURGE_BATCH = 1000  # waiting tasks deleted per function call, for the same reason
EXPIRE_BATCH = 1000  # library.lua's: tasks one expire call records at most


def _without_password(url: str) -> str:
    """``url`` fit for a message: its password (and user) left out."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=host))


def _us(value: datetime) -> int:
    """A datetime as the scripts store it: exact integer microseconds."""
    return (value - EPOCH) // timedelta(microseconds=1)


def _at(value: str | int) -> datetime:
    """A time the scripts stored, back as a datetime."""
    return EPOCH + timedelta(microseconds=int(value))


def _datetime(value: str | None) -> datetime | None:
    """A time the scripts may not have stored (yet)."""
    return _at(value) if value else None


def _minute(value: datetime) -> int:
    """The minute ``value`` falls in, as the scripts number them: since the epoch."""
    return _us(value) // 60_000_000


class RedisBackend(QueueBackend):
    """The queue in Redis. OPTIONS: see the docs' settings reference and Redis guide."""

    declared_options = (
        *QueueBackend.declared_options,  # the options every backend has
        result_ttl(24 * 60 * 60),
        Option("url", "redis://127.0.0.1:6379/0", text, "django_tasks_q.E007"),
        Option("prefix", "taskq", text),
        # Inside a transaction on ``database``, send tasks when it commits.
        Option("enqueue_on_commit", True, boolean),
        # Also copy finished tasks to the TaskResult table of ``database``.
        Option("record_results_in_database", False, boolean),
        # ``url`` names a node of a Redis Cluster.
        Option("cluster", False, boolean),
    )
    url: str
    prefix: str
    enqueue_on_commit: bool
    record_results_in_database: bool
    cluster: bool

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        # One hash tag for every key: a Redis Cluster keeps them in one slot,
        # as functions that touch many keys need.
        self.prefix = "{" + self.prefix + "}"
        if REDIS_INSTALLED:
            # A dropped connection, a restarting server (BusyLoadingError is a
            # ConnectionError), a failover's read-only replica, a cluster
            # between failover and recovery or moving the slot; and the
            # database, which holds the copies of results.
            self.transient_errors = (
                redis.ConnectionError,
                redis.TimeoutError,
                redis.exceptions.ReadOnlyError,
                redis.exceptions.ClusterDownError,
                redis.exceptions.TryAgainError,
                *TRANSIENT_DATABASE_ERRORS,
            )

    @property
    def tables_database(self) -> str | None:
        return self.database if self.record_results_in_database else None

    @property
    def _ttl(self) -> int:
        """result_ttl as the functions take it: whole seconds, 0 to keep results."""
        if self.result_ttl is None:
            return 0
        return max(1, round(self.result_ttl.total_seconds()))

    @cached_property
    def client(self) -> Any:
        # Thread-safe: a pool of connections (one per node of a cluster), each
        # re-opened after a fault. Any, not redis-py's types: they cannot tell
        # that with decode_responses every reply is str, never bytes.
        if self.cluster:
            return RedisCluster.from_url(self.url, decode_responses=True)
        return redis.Redis.from_url(self.url, decode_responses=True)

    @cached_property
    def functions(self) -> "Library":
        return Library(self.client, self.prefix)

    @cached_property
    def _queue_limits_json(self) -> str:
        """The queue_limits option as the claim function reads it (no nulls:
        cjson would make them a value that is not nil)."""
        limits = {}
        for name, limit in self.queue_limits.items():
            fields = limit.as_json(name)
            limits[name] = {k: v for k, v in fields.items() if v is not None and k != "name"}
        return json.dumps(limits)

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    # -- the django.tasks API ---------------------------------------------------

    def write(self, batch: EnqueueBatch):
        calls = [
            EnqueueCall(task_id, json.dumps(args), json.dumps(kwargs), limit_key)
            for task_id, args, kwargs, limit_key in zip(
                batch.ids,
                batch.args,
                batch.kwargs,
                batch.limit_keys or [""] * len(batch.ids),
                strict=True,
            )
        ]
        trace_context = None if batch.trace_context is None else json.dumps(batch.trace_context)
        task = batch.task
        rate = None if task.rate_limit is None else parse_rate(task.rate_limit)
        limits = (
            (task.concurrency, None, None)
            if rate is None
            else (task.concurrency, rate.count, rate.period)
        )

        def send() -> None:
            try:
                self.functions.enqueue(
                    task_path=batch.task.module_path,
                    queue=batch.task.queue_name,
                    priority=batch.task.priority,
                    max_attempts=batch.max_attempts,
                    enqueued_at=_us(batch.enqueued_at),
                    run_after=_us(batch.run_after),
                    expires_at=None if batch.expires_at is None else _us(batch.expires_at),
                    trace_context=trace_context,
                    limits=limits,
                    calls=calls,
                )
            except (redis.ConnectionError, redis.TimeoutError) as error:
                raise QueueUnavailable(
                    f"TASKS[{self.alias!r}]: the Redis server at {_without_password(self.url)} "
                    f"did not answer ({error}); nothing was queued."
                ) from error
            self.announce(batch.results)

        if self.enqueue_on_commit:
            # At once outside a transaction; else when (and only if) it commits.
            transaction.on_commit(send, using=self.database)
        else:
            send()
        return batch.results

    def get_result(self, result_id):
        try:
            task_id = str(uuid.UUID(str(result_id)))
        except ValueError:
            raise TaskResultDoesNotExist(result_id) from None
        fields = self.client.hgetall(self.key("task", task_id))
        if not fields:
            raise TaskResultDoesNotExist(result_id)
        enqueued_at = _at(fields["enqueued_at"])
        task = self.resolve_task(
            fields["task_path"],
            int(fields["priority"]),
            fields["queue_name"],
            deferred_to(_at(fields["run_after"]), enqueued_at),
        )
        status = fields["status"]
        return_value = fields.get("return_value")
        return self.make_result(
            task=task,
            id=task_id,
            status=status,
            return_value=json.loads(return_value) if return_value else None,
            errors=json.loads(fields["errors"]),
            enqueued_at=enqueued_at,
            started_at=_datetime(fields.get("started_at")),
            last_attempted_at=_datetime(fields.get("last_attempted_at")),
            finished_at=_datetime(fields.get("finished_at")),
            args=json.loads(fields["args"]),
            kwargs=json.loads(fields["kwargs"]),
            worker_ids=json.loads(fields["worker_ids"]),
            expires_at=_datetime(fields.get("expires_at")),
        )

    def cancel(self, result_id) -> bool:
        return self._cancel(result_id, abort=False) == (1, 0)

    def abort(self, result_id) -> bool:
        return sum(self._cancel(result_id, abort=True)) == 1

    def _cancel(self, result_id: str, *, abort: bool) -> tuple[int, int]:
        try:
            task_id = str(uuid.UUID(str(result_id)))
        except ValueError:
            return 0, 0
        counts = self.functions.cancel(
            now=_us(timezone.now()),
            result_ttl=self._ttl,
            outbox=self.record_results_in_database,
            abort=abort,
            task_ids=[task_id],
        )
        self.copy_results_to_database()
        return counts

    # -- the worker's store -----------------------------------------------------

    def record_and_claim(self, outcomes, queues, limit, worker_id, *, started=(), run_now=None):
        recorded = self._record(outcomes, started, worker_id) if outcomes or started else []
        if limit <= 0:
            return recorded, []
        now = timezone.now()
        claimed = self.functions.claim(
            now=_us(now),
            lease_until=_us(now + self.lease),
            limit=limit,
            worker_id=worker_id,
            queue_limits=self._queue_limits_json,
            queues=queues or (),
            run_now=limit if run_now is None else run_now,
        )
        return recorded, [self._claimed(task_id, fields, now) for task_id, fields in claimed]

    def _claimed(self, task_id: str, fields: "Fields", now: datetime) -> ClaimedTask:
        return ClaimedTask(
            id=task_id,
            task_path=fields["task_path"],
            queue_name=fields["queue_name"],
            priority=int(fields["priority"]),
            args=json.loads(fields["args"]),
            kwargs=json.loads(fields["kwargs"]),
            attempts=int(fields["attempts"]),
            max_attempts=int(fields["max_attempts"]),
            errors=stored_errors(json.loads(fields["errors"])),
            worker_ids=json.loads(fields["worker_ids"]),
            enqueued_at=_at(fields["enqueued_at"]),
            started_at=_datetime(fields.get("started_at")),
            last_attempted_at=now,
            run_after=_at(fields["run_after"]),
            ahead=fields.get("ahead") == "1",
            trace_context=json.loads(fields.get("trace_context") or "null"),
        )

    def _record(
        self, outcomes: list[Outcome], started: Sequence[ClaimedTask], worker_id: str
    ) -> list[Outcome]:
        recorded = set(
            self.functions.record(
                worker_id=worker_id,
                now=_us(timezone.now()),
                result_ttl=self._ttl,
                outbox=self.record_results_in_database,
                started=[(task.id, _us(task.last_attempted_at)) for task in started],
                outcomes=[self._outcome_fields(o) for o in outcomes],
            )
        )
        self.copy_results_to_database()
        return [o for o in outcomes if o.claimed.id in recorded]

    @staticmethod
    def _outcome_fields(outcome: Outcome) -> tuple[str, str, str, str, int, int]:
        """An outcome as the record function takes it: a retry has no return
        value, and its time is when to run again."""
        if outcome.retry_at is not None:  # status RETRY
            at, return_value = outcome.retry_at, ""
        else:
            at, return_value = outcome.finished_at, json.dumps(outcome.return_value)
        errors = json.dumps(outcome.errors)
        claimed = outcome.claimed
        return claimed.id, outcome.status, return_value, errors, _us(at), claimed.max_attempts

    def release(self, task_ids, worker_id) -> None:
        self.functions.release(worker_id=worker_id, now=_us(timezone.now()), task_ids=task_ids)

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
        return self.functions.heartbeat(
            worker_id=worker_id,
            now=_us(now),
            lease_until=_us(now + self.lease),
            registry_ttl_ms=self._registry_ttl(),
            task_ids=task_ids,
        )

    def recover(self) -> int:
        now = timezone.now()
        recovered = self.functions.recover(
            now=_us(now),
            result_ttl=self._ttl,
            outbox=self.record_results_in_database,
            forget_before=_us(now - 2 * self.lease),
            crash_retries=self.crash_retries,
        )
        self.copy_results_to_database()
        return recovered

    def expire_tasks(self) -> int:
        total = 0
        while True:
            expired = self.functions.expire(
                now=_us(timezone.now()),
                result_ttl=self._ttl,
                outbox=self.record_results_in_database,
            )
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
        reply = self.functions.stats(
            now=_us(now), first_minute=_minute(minutes[0]), minutes=len(minutes), queues=queues
        )
        found = []
        for name, waiting, scheduled, running, oldest, counts in reply:
            ok = [int(c.get(ResultStatus.SUCCESSFUL, 0)) for c in counts]
            failed = [
                sum(int(c.get(status, 0)) for status in ResultStatus.FAILURES) for c in counts
            ]
            stats = QueueStats(name, waiting=waiting, scheduled=scheduled, running=running)
            stats.waited_since(None if oldest is None else _at(oldest), now)
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
        counts: dict[tuple[str, str], int] = {}
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
                started_at=_at(fields["started_at"]),
                last_heartbeat_at=_at(fields["last_heartbeat_at"]),
            )
            for worker_id, fields in zip(ids, pipeline.execute(), strict=True)
            if fields  # expired: silent for two leases, about to leave the registry
        ]
        return sorted(entries, key=lambda entry: (entry.hostname, entry.started_at))

    def purge(self, queue_name):
        purged = 0
        while True:
            deleted = self.functions.purge(queue=queue_name, limit=PURGE_BATCH)
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

    def _result_row(self, task_id: str, fields: "Fields") -> "TaskResult":
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
            enqueued_at=_at(fields["enqueued_at"]),
            run_after=_at(fields["run_after"]),
            started_at=_datetime(fields.get("started_at")),
            last_attempted_at=_datetime(fields.get("last_attempted_at")),
            finished_at=_at(fields["finished_at"]),
        )

    # -- system checks ----------------------------------------------------------

    def check(self, **kwargs):
        messages = super().check(**kwargs)
        if not REDIS_INSTALLED:
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
