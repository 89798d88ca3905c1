"""The queue in the project's own database: PostgreSQL, or SQLite with no server.

Enqueueing is an INSERT on the caller's connection, so it joins the caller's
transaction: a rolled-back view leaves no task behind, and no worker sees a
task before its transaction commits. The statements are in ``sql.py``.
"""

import os
import socket
import sqlite3
import uuid
from contextlib import nullcontext
from datetime import timedelta
from functools import cached_property, partial

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core import checks
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models import Count, DurationField, ExpressionWrapper, F, Min, Q, Sum
from django.db.models.functions import TruncMinute
from django.tasks.exceptions import TaskResultDoesNotExist
from django.tasks.signals import task_enqueued
from django.utils import timezone

from .. import operations
from ..ids import uuid7
from ..models import ResultStatus, Task, TaskResult, TaskStatus, Worker
from ..stats import FAILED, QueueStats, WorkerEntry, last_minutes
from ..task import Call, QTaskResult
from . import chains
from .base import Outcome, QueueBackend, deadline_after, time_left
from .listener import PostgresListener
from .result_listener import ResultListener
from .sql import queries_for

RESULT_FIELDS = (
    "task_path",
    "queue_name",
    "priority",
    "status",
    "args",
    "kwargs",
    "errors",
    "worker_ids",
    "enqueued_at",
    "started_at",
    "last_attempted_at",
)
# A queued task's result has these too (and no return value yet).
QUEUE_ONLY_FIELDS = ("unique_key", "expires_at")


class DatabaseBackend(QueueBackend):
    """OPTIONS: ``database`` (the alias holding the queue, default "default"),
    ``poll_interval`` (seconds an idle worker waits between looks, default 1),
    ``lease`` (seconds a claim is good for before it must be renewed, default 60),
    ``synchronous_commit`` (PostgreSQL: whether the worker's records, and the
    claims made with them, wait for the WAL flush, default True), ``result_ttl`` (seconds finished
    results are kept before workers delete them; default None, keep them).
    """

    supports_periodic = True
    supports_after = True

    def __init__(self, alias, params):
        super().__init__(alias, params)
        self.database = self.options.get("database", DEFAULT_DB_ALIAS)
        # PostgreSQL: whether the worker's own claims and records wait for the
        # WAL flush. Off, a database crash can lose the last moments of them,
        # and those tasks then run again: never lost, as at-least-once allows.
        self.synchronous_commit = bool(self.options.get("synchronous_commit", True))
        # Seconds finished results are kept; workers delete older ones. None: forever.
        ttl = self.options.get("result_ttl")
        self.result_ttl = None if ttl is None else timedelta(seconds=float(ttl))

    @property
    def connection(self):
        return connections[self.database]

    @cached_property
    def queries(self):
        return queries_for(self.connection)

    # -- the django.tasks API ---------------------------------------------------

    def enqueue(self, task, args, kwargs):
        return self.enqueue_many(task, [Call(args, kwargs)])[0]

    def enqueue_many(self, task, calls):
        self.validate_task(task)
        calls = [(uuid7(), *arguments) for arguments in self.encode_calls(task, calls)]
        now = timezone.now()
        parents = getattr(task, "waits_for", ())
        run_after = self.run_after_for(task, now)
        times = {"run_after": run_after, "expires_at": self.expires_at_for(task, run_after, now)}
        keys = self.unique_keys(task, calls)
        # A chained task is inserted, then made to wait, in one transaction.
        atomic = transaction.atomic(using=self.database) if parents else nullcontext()
        with atomic, self.connection.cursor() as cursor:
            if keys is None:
                self.queries.insert(cursor, task, calls, now=now, **times)
                results = self.ready_results(task, calls, now, expires_at=times["expires_at"])
            else:
                results = self._enqueue_unique(cursor, task, calls, keys, now, times)
            if parents:
                # Only tasks this call created: a duplicate keeps its own parents.
                children = [uuid.UUID(result.id) for result in results if result.created]
                chains.hold(self.database, task, children)
                # Linked to their parents once committed: no lock on a parent
                # is held while the caller's transaction lasts.
                transaction.on_commit(
                    partial(chains.link, self.database, children, parents),
                    using=self.database,
                    robust=True,  # if it fails, a worker's sweep does it
                )
        for result in results:
            if result.created:
                task_enqueued.send(type(self), task_result=result)
        return results

    def _enqueue_unique(self, cursor, task, calls, keys, now, times):
        """Queue each call unless a queued task holds its key; then the caller
        gets that task's result, with ``created`` False."""
        results = [None] * len(calls)
        # In key order: concurrent batches whose keys overlap then take them
        # in the same order, and cannot deadlock waiting on each other.
        pending = sorted(range(len(calls)), key=keys.__getitem__)
        while pending:
            inserted = self.queries.insert_unique(
                cursor,
                task,
                [calls[i] for i in pending],
                [keys[i] for i in pending],
                now=now,
                **times,
            )
            taken = []
            for i in pending:
                if str(calls[i][0]) in inserted:
                    [results[i]] = self.ready_results(
                        task, [calls[i]], now, unique_key=keys[i], expires_at=times["expires_at"]
                    )
                else:
                    taken.append(i)
            holders = self._queued_by_key({keys[i] for i in taken})
            for i in taken:
                results[i] = holders.get(keys[i])
            # A holder that finished since the INSERT met it has freed its
            # key: those calls try again.
            pending = [i for i in taken if results[i] is None]
        return results

    def _queued_by_key(self, keys) -> dict[str, QTaskResult]:
        rows = (
            Task.objects.using(self.database)
            .filter(unique_key__in=keys)
            .values("id", *RESULT_FIELDS, *QUEUE_ONLY_FIELDS)
        )
        return {row["unique_key"]: self._result(row, created=False) for row in rows}

    def get_result(self, result_id):
        # Look in the queue first: a task moves to the history in one
        # transaction, so missing it here means the history has it.
        try:
            pk = uuid.UUID(str(result_id))
        except ValueError:
            raise TaskResultDoesNotExist(result_id) from None
        queued = Task.objects.using(self.database).filter(pk=pk)
        row = queued.values("id", *RESULT_FIELDS, *QUEUE_ONLY_FIELDS).first()
        if row is None:
            row = (
                TaskResult.objects.using(self.database)
                .filter(pk=pk)
                .values("id", *RESULT_FIELDS, "return_value", "finished_at")
                .first()
            )
            if row is None:
                raise TaskResultDoesNotExist(result_id)
        return self._result(row)

    def _result(self, row, **fields):
        """The API's result for a row of the queue or of the history."""
        task = self.resolve_task(row.pop("task_path"), row.pop("priority"), row.pop("queue_name"))
        row.setdefault("finished_at", None)  # a queued task has not finished
        return self.make_result(task=task, id=str(row.pop("id")), **row, **fields)

    def cancel(self, result_id) -> bool:
        tasks = self._queued(result_id)
        return tasks is not None and operations.cancel(tasks) == 1

    def abort(self, result_id) -> bool:
        tasks = self._queued(result_id)
        return tasks is not None and sum(operations.abort(tasks)) == 1

    def _queued(self, result_id):
        """The queue's row for ``result_id``, as a queryset; None for a malformed id."""
        try:
            pk = uuid.UUID(str(result_id))
        except ValueError:
            return None
        return Task.objects.using(self.database).filter(pk=pk)

    # -- the worker's store -----------------------------------------------------

    def record_and_claim(self, outcomes, queues, limit, worker_id):
        """Record ``outcomes`` and claim up to ``limit`` more, with one commit."""
        finished = [o for o in outcomes if o.status != Outcome.RETRY]
        retried = [o for o in outcomes if o.status == Outcome.RETRY]
        recorded, claimed = set(), []
        now = timezone.now()
        # A claim alone is one statement: in autocommit it costs one round
        # trip instead of three (BEGIN, claim, COMMIT), which an idle worker's
        # latency feels, and it need not wait for the WAL flush; not so inside
        # a caller's transaction, whose commit must stay as durable as it was.
        # Recording needs a transaction (FINISH, then chains).
        alone = not outcomes and not self.connection.in_atomic_block
        atomic = nullcontext() if alone else transaction.atomic(using=self.database)
        with atomic, self.connection.cursor() as cursor:
            if outcomes and not self.synchronous_commit:
                self.queries.commit_asynchronously(cursor)
            if finished:
                done, passed_on = self.queries.finish(cursor, finished, worker_id)
                recorded |= done
                if passed_on:  # to chained tasks and wait() callers
                    chains.pass_on(self.database, passed_on)
            if retried:
                recorded |= self.queries.retry(cursor, retried, worker_id)
            if limit > 0:
                claimed = self.queries.claim(
                    cursor, queues, limit, worker_id, now, now + self.lease, alone=alone
                )
        return [o for o in outcomes if o.claimed.id in recorded], claimed

    def release(self, task_ids, worker_id) -> None:
        with self.connection.cursor() as cursor:
            self.queries.release(cursor, task_ids, worker_id)

    def register_worker(self, worker_id, *, queues, concurrency, pool) -> None:
        now = timezone.now()
        Worker.objects.using(self.database).update_or_create(
            id=worker_id,
            defaults={
                "hostname": socket.gethostname(),
                "pid": os.getpid(),
                "backend": self.alias,
                "queues": queues or [],
                "concurrency": concurrency,
                "pool": pool,
                "started_at": now,
                "last_heartbeat_at": now,
            },
        )

    def heartbeat(self, worker_id, task_ids) -> bool:
        now = timezone.now()
        if task_ids:
            with self.connection.cursor() as cursor:
                self.queries.renew(cursor, task_ids, worker_id, now + self.lease)
        workers = Worker.objects.using(self.database)
        return workers.filter(id=worker_id).update(last_heartbeat_at=now) == 1

    def recover(self) -> int:
        now = timezone.now()
        with transaction.atomic(using=self.database):
            with self.connection.cursor() as cursor:
                recovered = self.queries.recover(cursor, now)
        # Chained tasks whose parents ended without a worker recording them.
        chains.sweep(self.database)
        # A worker silent for two leases is gone: its tasks were recovered above.
        Worker.objects.using(self.database).filter(
            last_heartbeat_at__lt=now - 2 * self.lease
        ).delete()
        return recovered

    def expire_tasks(self, batch_size=1000) -> int:
        """Record waiting tasks past their deadline as EXPIRED, a transaction
        per batch, until none is left; returns how many."""
        total = 0
        while True:
            with transaction.atomic(using=self.database), self.connection.cursor() as cursor:
                expired = self.queries.expire(cursor, timezone.now(), batch_size)
            total += expired
            if expired < batch_size:
                return total

    def wait_for_result(self, result_id, timeout):
        if self.connection.vendor != "postgresql":
            return super().wait_for_result(result_id, timeout)
        task_id, deadline = self._task_id(result_id), deadline_after(timeout)
        listener = ResultListener.for_connection(self.connection)
        while True:
            left_queue = listener.wait(task_id, time_left(deadline), self.poll_interval)
            if self._has_finished(result_id, left_queue):
                return
            if not left_queue:
                raise TimeoutError(f"Task {result_id} has not finished yet.")

    async def async_wait_for_result(self, result_id, timeout):
        if self.connection.vendor != "postgresql":
            return await super().async_wait_for_result(result_id, timeout)
        task_id, deadline = self._task_id(result_id), deadline_after(timeout)
        listener = ResultListener.for_connection(self.connection)
        while True:
            # The listener's wait holds no Django connection: any thread will do.
            left_queue = await sync_to_async(listener.wait, thread_sensitive=False)(
                task_id, time_left(deadline), self.poll_interval
            )
            if await sync_to_async(self._has_finished)(result_id, left_queue):
                return
            if not left_queue:
                raise TimeoutError(f"Task {result_id} has not finished yet.")

    def _task_id(self, result_id) -> str:
        try:
            return str(uuid.UUID(str(result_id)))
        except ValueError:
            raise TaskResultDoesNotExist(result_id) from None

    def _has_finished(self, result_id, left_queue: bool) -> bool:
        """Whether the task has finished as the caller's connection sees it."""
        if self.get_result(result_id).is_finished:
            return True
        if left_queue and self.connection.in_atomic_block:
            # Queued as this transaction sees it, gone for everyone else.
            raise RuntimeError(
                f"Task {result_id} was enqueued in this transaction, which has not "
                "committed, so no worker can run it yet: wait() after the commit "
                "(e.g. in transaction.on_commit)."
            )
        return False  # it left the queue and came back (retried): wait again

    def prune_results(self, limit=1000) -> int:
        if self.result_ttl is None:
            return 0
        with self.connection.cursor() as cursor:
            return self.queries.prune(cursor, timezone.now() - self.result_ttl, limit)

    def unregister_worker(self, worker_id) -> None:
        Worker.objects.using(self.database).filter(id=worker_id).delete()

    def aborts_requested(self, worker_id, task_ids) -> list[str]:
        with self.connection.cursor() as cursor:
            return self.queries.aborts_requested(cursor, task_ids, worker_id)

    def listen(self, queues, wake, *, worker_id=None, on_abort=None):
        if self.connection.vendor != "postgresql":
            return None
        params = self.connection.get_connection_params()
        return PostgresListener(params, queues, wake, worker_id, on_abort).start()

    # -- how the queue is doing ----------------------------------------------------
    # Each read is one GROUP BY over an indexed column: its cost follows the
    # number of queues, not of tasks.

    def queue_stats(self, queues=(), *, now=None, buckets=60):
        now = now or timezone.now()
        stats = {name: QueueStats(name) for name in queues}

        def queue(name):
            return stats.setdefault(name, QueueStats(name))

        due = Q(status=TaskStatus.READY, run_after__lte=now)
        for row in (
            Task.objects.using(self.database)
            .order_by()
            .values("queue_name")
            .annotate(
                waiting=Count("pk", filter=due),
                scheduled=Count("pk", filter=Q(status=TaskStatus.READY, run_after__gt=now)),
                running=Count("pk", filter=Q(status=TaskStatus.RUNNING)),
                blocked=Count("pk", filter=Q(status=TaskStatus.WAITING)),
                oldest=Min("run_after", filter=due),
            )
        ):
            found = queue(row["queue_name"])
            found.waiting, found.scheduled, found.running, found.blocked = (
                row["waiting"],
                row["scheduled"],
                row["running"],
                row["blocked"],
            )
            found.waited_since(row["oldest"], now)

        for row in (
            TaskResult.objects.using(self.database)
            .filter(finished_at__gt=now - timedelta(hours=1), status__in=FAILED)
            .order_by()
            .values("queue_name")
            .annotate(failed=Count("pk"))
        ):
            queue(row["queue_name"]).failed_last_hour = row["failed"]

        # Throughput: one bar per minute, the current (partial) minute last.
        minutes = last_minutes(now, buckets)
        counts = {}
        for row in (
            TaskResult.objects.using(self.database)
            .filter(finished_at__gte=minutes[0])
            .order_by()
            .annotate(minute=TruncMinute("finished_at"))
            .values("queue_name", "minute")
            .annotate(
                successful=Count("pk", filter=Q(status=ResultStatus.SUCCESSFUL)),
                failed=Count("pk", filter=Q(status__in=FAILED)),
            )
        ):
            queue(row["queue_name"])
            counts[row["queue_name"], row["minute"]] = (row["successful"], row["failed"])
        for found in stats.values():
            found.throughput = [(m, *counts.get((found.queue, m), (0, 0))) for m in minutes]
            found.finished_last_hour = sum(ok + failed for _, ok, failed in found.throughput)
        return sorted(stats.values(), key=lambda found: found.queue)

    def _finished_since(self, since):
        return TaskResult.objects.using(self.database).filter(finished_at__gt=since).order_by()

    def finished_counts(self, since, now):
        rows = self._finished_since(since).values("queue_name", "status").annotate(n=Count("pk"))
        return {(row["queue_name"], row["status"]): row["n"] for row in rows}

    def run_times(self, since, bounds):
        # The last attempt's: from the first start would count retry waits too.
        duration = ExpressionWrapper(
            F("finished_at") - F("last_attempted_at"), output_field=DurationField()
        )
        ran = (
            self._finished_since(since)
            .filter(last_attempted_at__isnull=False)
            .exclude(status=ResultStatus.CANCELLED)
            .annotate(duration=duration)
        )
        le = {f"le_{i}": timedelta(seconds=bound) for i, bound in enumerate(bounds)}
        rows = ran.values("queue_name").annotate(
            total=Count("pk"),
            seconds=Sum("duration"),
            **{key: Count("pk", filter=Q(duration__lte=bound)) for key, bound in le.items()},
        )
        return {
            row["queue_name"]: (
                [row[key] for key in le],
                row["total"],
                row["seconds"].total_seconds() if row["seconds"] else 0.0,
            )
            for row in rows
        }

    def workers(self, now=None):
        now = now or timezone.now()
        rows = Worker.objects.using(self.database).order_by("hostname", "started_at").values()
        return [WorkerEntry.seen_at(now, self.lease, **row) for row in rows]

    def purge(self, queue_name):
        return operations.purge(queue_name, using=self.database)

    # -- system checks ----------------------------------------------------------

    def check(self, **kwargs):
        errors = super().check(**kwargs)
        if self.database not in settings.DATABASES:
            errors.append(
                checks.Error(
                    f"TASKS[{self.alias!r}]['OPTIONS']['database'] names "
                    f"{self.database!r}, which is not in DATABASES.",
                    id="django_tasks_q.E002",
                )
            )
            return errors
        vendor = self.connection.vendor
        if vendor not in ("postgresql", "sqlite"):
            errors.append(
                checks.Error(
                    f"Database {self.database!r} is {vendor}; the database "
                    "backend supports PostgreSQL and SQLite.",
                    id="django_tasks_q.E003",
                )
            )
        if self.result_ttl is not None and self.result_ttl.total_seconds() <= 0:
            errors.append(
                checks.Error(
                    f"TASKS[{self.alias!r}]['OPTIONS']['result_ttl'] must be a positive "
                    "number of seconds, or None to keep results.",
                    id="django_tasks_q.E008",
                )
            )
        if vendor == "sqlite" and sqlite3.sqlite_version_info < (3, 35):
            errors.append(
                checks.Error(
                    f"SQLite {sqlite3.sqlite_version} is too old: the queue "
                    "needs 3.35 or newer (for RETURNING).",
                    id="django_tasks_q.E004",
                )
            )
        return errors
