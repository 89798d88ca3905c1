"""The queue in the project's own database: PostgreSQL, or SQLite with no server.

Enqueueing is an INSERT on the caller's connection, so it joins the caller's
transaction: a rolled-back view leaves no task behind, and no worker sees a
task before its transaction commits. The statements are in ``statements.py``
and, per vendor, ``postgres.py`` and ``sqlite.py``.
"""

import os
import socket
import uuid
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from datetime import datetime
from functools import cached_property, partial
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from django.core import checks
from django.db import OperationalError, ProgrammingError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper
from django.db.models import QuerySet
from django.utils import timezone

from ... import limits
from ...checks import Option, boolean, direct_postgres_alias
from ...compat import TaskResultDoesNotExist
from ...exceptions import QueueNotMigrated
from ...groups import GroupProgress, GroupResult
from ...task import QTaskResult
from ..base import (
    QueueBackend,
    deadline_after,
    deferred_to,
    result_ttl,
    time_left,
)
from ..contract import (
    ClaimedTask,
    EnqueueBatch,
    Listener,
    Outcome,
    QueueStats,
    WorkerEntry,
)
from .listeners import PostgresListener, psycopg3_installed
from .statements import Ended, Statements, statements_for

if TYPE_CHECKING:
    from ...models import Task, Worker

# The models, and the modules that use them, are imported where they are
# used: this module must import without the app installed, so that check
# E001 can say it is missing.

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
    "run_after",  # the result's task's (see deferred_to)
)
# A queued task's result has these too (and no return value yet).
QUEUE_ONLY_FIELDS = ("unique_key", "expires_at")


class DatabaseBackend(QueueBackend):
    """The queue in the ``Task`` and ``TaskResult`` tables of the ``database``
    alias (PostgreSQL or SQLite). OPTIONS: see the docs' settings reference."""

    supports_periodic = True
    supports_after = True
    supports_unique = True
    supports_groups = True
    declared_options = (
        *QueueBackend.declared_options,  # the options every backend has
        result_ttl(None),
        # PostgreSQL: whether the worker's own claims and records wait for the
        # WAL flush. Off, a database crash can lose the last moments of them,
        # and those tasks then run again: never lost, as at-least-once allows.
        Option("synchronous_commit", True, boolean),
        # PostgreSQL: the database alias LISTEN connects with (wake-ups,
        # abort requests, wait()), when ``database`` goes through a pooler
        # in transaction mode (PgBouncer), where LISTEN hears nothing.
        Option("listen_database", None, direct_postgres_alias),
    )
    synchronous_commit: bool
    listen_database: str | None

    @property
    def queue_tables(self) -> str:
        return self.database

    @property
    def connection(self) -> BaseDatabaseWrapper:
        return connections[self.database]

    @property
    def listen_connection(self) -> BaseDatabaseWrapper:
        """Whose parameters LISTEN connects with: it needs a session of its own."""
        return connections[self.listen_database or self.database]

    @cached_property
    def statements(self) -> Statements:
        return statements_for(self.connection)

    # -- the django.tasks API ---------------------------------------------------

    def write(self, batch: EnqueueBatch) -> list[QTaskResult]:
        try:
            self._write(batch)
        except (ProgrammingError, OperationalError) as error:
            # Told apart here, where it failed: no query per enqueue to look first.
            if self.statements.is_missing_table(error):
                raise QueueNotMigrated(
                    f"The queue's tables are not in database {self.database!r}: "
                    f"run manage.py migrate --database {self.database}."
                ) from error
            raise
        self.announce(batch.results)
        return batch.results

    def _write(self, batch: EnqueueBatch) -> None:
        # A chained task is inserted, then made to wait, in one transaction;
        # a group's calls are inserted with their group's row; a limited one
        # inserted, then given its limits.
        together = batch.waits_for or batch.group_id or batch.limit_keys is not None
        atomic = transaction.atomic(using=self.database) if together else nullcontext()
        with atomic, self.connection.cursor() as cursor:
            if batch.group_id is not None:
                from . import groups

                groups.create(self.database, batch)
            if batch.unique_keys is None:
                self.statements.insert(cursor, batch)
            else:
                self._insert_unique(cursor, batch, batch.unique_keys)
            if batch.limit_keys is not None:
                self.statements.mark_limited(cursor, batch)
            if batch.waits_for:
                from . import chains

                # Only tasks this call created: a duplicate keeps its own parents.
                children = [uuid.UUID(result.id) for result in batch.results if result.created]
                chains.hold(self.database, batch, children)
                # Linked to their parents once committed: no lock on a parent
                # is held while the caller's transaction lasts.
                transaction.on_commit(
                    partial(chains.link, self.database, children, list(batch.waits_for)),
                    using=self.database,
                    robust=True,  # if it fails, a worker's sweep does it
                )

    def _insert_unique(self, cursor: CursorWrapper, batch: EnqueueBatch, keys: list[str]) -> None:
        """Queue each call unless a queued task holds its key (``keys``, one per
        call); then the caller gets that task's result, with ``created`` False."""
        queued = list(batch.results)
        # In key order: concurrent batches whose keys overlap then take them
        # in the same order, and cannot deadlock waiting on each other.
        pending = sorted(range(len(batch.ids)), key=keys.__getitem__)
        while pending:
            inserted = self.statements.insert_unique(cursor, batch, pending)
            taken = [i for i in pending if batch.ids[i] not in inserted]
            holders = self._queued_by_key({keys[i] for i in taken})
            for i in taken:
                batch.results[i] = holders.get(keys[i], queued[i])
            # A holder that finished since the INSERT met it has freed its
            # key: those calls try again.
            pending = [i for i in taken if keys[i] not in holders]

    def _queued_by_key(self, keys: set[str]) -> dict[str, QTaskResult]:
        from ...models import Task

        rows = (
            Task.objects.using(self.database)
            .filter(unique_key__in=keys)
            .values("id", *RESULT_FIELDS, *QUEUE_ONLY_FIELDS)
        )
        return {row["unique_key"]: self._result(row, created=False) for row in rows}

    def get_result(self, result_id: str) -> QTaskResult:
        from ...models import Task, TaskResult

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

    def _result(self, row: dict[str, Any], **fields: Any) -> QTaskResult:
        """The API's result for a row of the queue or of the history."""
        task = self.resolve_task(
            row.pop("task_path"),
            row.pop("priority"),
            row.pop("queue_name"),
            deferred_to(row.pop("run_after"), row["enqueued_at"]),
        )
        row.setdefault("finished_at", None)  # a queued task has not finished
        return self.make_result(task=task, id=str(row.pop("id")), **row, **fields)

    # -- groups: see groups.py ------------------------------------------------------

    def get_group(self, group_id: str) -> GroupResult:
        from . import groups

        group = groups.get(self.database, group_id)
        return GroupResult(
            id=str(group.pk),
            backend=self.alias,
            task_path=group.task_path,
            size=group.size,
            enqueued_at=group.enqueued_at,
        )

    def group_progress(self, group_id: str) -> GroupProgress:
        from . import groups

        return groups.progress(self.database, groups.get(self.database, group_id))

    def cancel_group(self, group_id: str) -> int:
        from . import groups, operations

        group = groups.get(self.database, group_id)
        return operations.cancel(groups.queued_members(self.database, group))

    def group_results(self, group_id: str) -> list[QTaskResult]:
        from . import groups

        group = groups.get(self.database, group_id)
        queued = groups.queued_members(self.database, group)
        finished = groups.finished_members(self.database, group)
        rows = [
            *queued.values("id", *RESULT_FIELDS, *QUEUE_ONLY_FIELDS),
            *finished.values("id", *RESULT_FIELDS, "return_value", "finished_at"),
        ]
        return [self._result(row) for row in sorted(rows, key=lambda row: row["id"])]

    def cancel(self, result_id: str) -> bool:
        from . import operations

        tasks = self._queued(result_id)
        return tasks is not None and operations.cancel(tasks) == 1

    def abort(self, result_id: str) -> bool:
        from . import operations

        tasks = self._queued(result_id)
        return tasks is not None and sum(operations.abort(tasks)) == 1

    def _queued(self, result_id: str) -> "QuerySet[Task] | None":
        """The queue's row for ``result_id``, as a queryset; None for a malformed id."""
        try:
            pk = uuid.UUID(str(result_id))
        except ValueError:
            return None
        from ...models import Task

        return Task.objects.using(self.database).filter(pk=pk)

    # -- the worker's store -----------------------------------------------------

    def record_and_claim(
        self,
        outcomes: list[Outcome],
        queues: list[str] | None,
        limit: int,
        worker_id: str,
        *,
        started: Sequence[ClaimedTask] = (),
        run_now: int | None = None,
    ) -> tuple[list[Outcome], list[ClaimedTask]]:
        """Count the attempts ``started``, record ``outcomes`` and claim up to
        ``limit`` more, with one commit."""
        finished = [o for o in outcomes if o.status != Outcome.RETRY]
        retried = [o for o in outcomes if o.status == Outcome.RETRY]
        recorded: set[str] = set()
        claimed: list[ClaimedTask] = []
        now = timezone.now()
        # A claim alone is one statement: in autocommit it costs one round
        # trip instead of three (BEGIN, claim, COMMIT), which an idle worker's
        # latency feels, and it need not wait for the WAL flush; not so inside
        # a caller's transaction, whose commit must stay as durable as it was.
        # Recording needs a transaction (the move to the history, then chains).
        alone = not outcomes and not started and not self.connection.in_atomic_block
        atomic = nullcontext() if alone else transaction.atomic(using=self.database)
        with atomic, self.connection.cursor() as cursor:
            if (outcomes or started) and not self.synchronous_commit:
                self.statements.commit_asynchronously(cursor)
            if started:  # first: the outcomes may be of these very attempts
                self.statements.start(cursor, list(started), worker_id)
            if finished:
                ended = self.statements.finish(cursor, finished, worker_id)
                recorded |= ended.ids
                self._pass_on(ended)
            if retried:
                recorded |= self.statements.retry(cursor, retried, worker_id)
            # Limited tasks first if the last look saw one due, else after
            # the unlimited claim, which says whether one is (see LIMITED_DUE).
            look = limit > 0 and bool(limits.declared or self.queue_limits)
            limited_first = look and self._limited_due
            if limited_first:
                claimed = self._claim_limited(cursor, queues, limit, worker_id)
            # A full batch of limited tasks: more may be due; else the unlimited claim says.
            due: bool | None = True if limited_first and len(claimed) == limit else None
            if limit > len(claimed):
                # Limited tasks start at claim; of the rest, those beyond the
                # free slots are claimed ahead.
                starting = limit if run_now is None else run_now
                unlimited, due = self.statements.claim(
                    cursor,
                    queues,
                    limit - len(claimed),
                    worker_id,
                    now,
                    now + self.lease,
                    run_now=max(starting - len(claimed), 0),
                    alone=alone,
                    limited_queues=list(self.queue_limits),
                    look_for_limited=look,
                )
                claimed += unlimited
            if look:
                if due is None:  # the claim could not say: ask on its own
                    due = self.statements.limited_waiting(
                        cursor, queues, list(self.queue_limits), now
                    )
                if due and not limited_first and limit > len(claimed):
                    claimed += self._claim_limited(cursor, queues, limit - len(claimed), worker_id)
                self._limited_due = due
        return [o for o in outcomes if o.claimed.id in recorded], claimed

    # Whether the last look saw a limited task due: the next claim takes
    # limited tasks first (a busy worker's claims are full of unlimited ones).
    # The backend is per thread (Django's task_backends), as is the worker loop.
    _limited_due = True

    def _claim_limited(
        self, cursor: CursorWrapper, queues: list[str] | None, limit: int, worker_id: str
    ) -> list[ClaimedTask]:
        with transaction.atomic(using=self.database):  # holds the limits' lock
            return self.statements.claim_limited(
                cursor, queues, self.queue_limits, limit, worker_id, self.lease
            )

    def _pass_on(self, ended: Ended) -> None:
        """Tell those waiting for the ended tasks (blocked tasks, wait() callers),
        in the transaction that ended them."""
        if waited_for := ended.with_dependents:
            from . import chains

            chains.pass_on(self.database, waited_for)

    def release(self, task_ids: list[str], worker_id: str) -> None:
        with self.connection.cursor() as cursor:
            self.statements.release(cursor, task_ids, worker_id)

    @property
    def _workers(self) -> "QuerySet[Worker]":
        from ...models import Worker

        return Worker.objects.using(self.database)

    def register_worker(
        self, worker_id: str, *, queues: list[str] | None, concurrency: int, pool: str
    ) -> None:
        now = timezone.now()
        self._workers.update_or_create(
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

    def heartbeat(self, worker_id: str, task_ids: list[str]) -> bool:
        now = timezone.now()
        if task_ids:
            with self.connection.cursor() as cursor:
                self.statements.renew(cursor, task_ids, worker_id, now + self.lease)
        return self._workers.filter(id=worker_id).update(last_heartbeat_at=now) == 1

    def recover(self) -> int:
        now = timezone.now()
        with transaction.atomic(using=self.database), self.connection.cursor() as cursor:
            requeued, abandoned = self.statements.recover(cursor, now, self.crash_retries)
            self._pass_on(abandoned)
        from . import chains

        # Blocked tasks whose parents ended without passing it on (a link
        # that never ran, an operator's delete).
        chains.sweep(self.database)
        # A worker silent for two leases is gone: its tasks were recovered above.
        self._workers.filter(last_heartbeat_at__lt=now - 2 * self.lease).delete()
        return requeued + len(abandoned)

    def expire_tasks(self, batch_size: int = 1000) -> int:
        """End waiting tasks past their deadline as EXPIRED, a transaction per
        batch, until none is left; returns how many."""
        total = 0
        while True:
            with transaction.atomic(using=self.database), self.connection.cursor() as cursor:
                expired = self.statements.expire(cursor, timezone.now(), batch_size)
                self._pass_on(expired)
            total += len(expired)
            if len(expired) < batch_size:
                return total

    def wait_for_result(self, result_id: str, timeout: float | None) -> None:
        if not self._notifies_results():
            return super().wait_for_result(result_id, timeout)
        from .result_listener import ResultListener  # only callers of wait() need it

        task_id, deadline = self._task_id(result_id), deadline_after(timeout)
        listener = ResultListener.for_connection(self.listen_connection)
        while True:
            left_queue = listener.wait(task_id, time_left(deadline), self.poll_interval)
            if self._has_finished(result_id, left_queue):
                return
            if not left_queue:
                raise TimeoutError(f"Task {result_id} has not finished yet.")

    async def async_wait_for_result(self, result_id: str, timeout: float | None) -> None:
        if not self._notifies_results():
            return await super().async_wait_for_result(result_id, timeout)
        from .result_listener import ResultListener

        task_id, deadline = self._task_id(result_id), deadline_after(timeout)
        listener = ResultListener.for_connection(self.listen_connection)
        while True:
            # The listener's wait holds no Django connection: any thread will do.
            left_queue = await sync_to_async(listener.wait, thread_sensitive=False)(
                task_id, time_left(deadline), self.poll_interval
            )
            if await sync_to_async(self._has_finished)(result_id, left_queue):
                return
            if not left_queue:
                raise TimeoutError(f"Task {result_id} has not finished yet.")

    def _task_id(self, result_id: str) -> str:
        try:
            return str(uuid.UUID(str(result_id)))
        except ValueError:
            raise TaskResultDoesNotExist(result_id) from None

    def _notifies_results(self) -> bool:
        """Whether wait() can be woken by NOTIFY: on PostgreSQL, with psycopg 3
        (a psycopg2 project polls, as its workers do: check W002)."""
        return self.connection.vendor == "postgresql" and psycopg3_installed()

    def _has_finished(self, result_id: str, left_queue: bool) -> bool:
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

    def prune_results(self, limit: int = 1000) -> int:
        if self.result_ttl is None:
            return 0
        from . import groups

        before = timezone.now() - self.result_ttl
        with self.connection.cursor() as cursor:
            pruned = self.statements.prune(cursor, before, limit)
        groups.prune(self.database, before, limit)  # those whose members are all gone now
        return pruned

    def unregister_worker(self, worker_id: str) -> None:
        self._workers.filter(id=worker_id).delete()

    def aborts_requested(self, worker_id: str, task_ids: list[str]) -> list[str]:
        with self.connection.cursor() as cursor:
            return self.statements.aborts_requested(cursor, task_ids, worker_id)

    def listen(
        self,
        queues: list[str] | None,
        wake: Callable[[], None],
        *,
        worker_id: str | None = None,
        on_abort: Callable[[], None] | None = None,
    ) -> Listener | None:
        if self.connection.vendor != "postgresql" or not psycopg3_installed():
            return None  # the worker polls (check W002 says why, on PostgreSQL)
        params = self.listen_connection.get_connection_params()
        return PostgresListener(params, queues, wake, worker_id, on_abort).start()

    # -- how the queue is doing: see figures.py ------------------------------------

    def queue_stats(
        self, queues: Iterable[str] = (), *, now: datetime | None = None, buckets: int = 60
    ) -> list[QueueStats]:
        from . import figures
        from .held_back import held_back_counts

        now = now or timezone.now()
        stats = figures.queue_stats(self.database, queues, now, buckets)
        held_back = held_back_counts(self.queue_limits, now, self.database)
        for found in stats:
            found.held_back = held_back.get(found.queue, 0)
        return stats

    def finished_counts(self, since: datetime, now: datetime) -> dict[tuple[str, str], int]:
        from . import figures

        return figures.finished_counts(self.database, since)

    def run_times(
        self, since: datetime, bounds: Iterable[float]
    ) -> dict[str, tuple[list[int], int, float]]:
        from . import figures

        return figures.run_times(self.database, since, bounds)

    def workers(self, now: datetime | None = None) -> list[WorkerEntry]:
        now = now or timezone.now()
        rows = self._workers.order_by("hostname", "started_at").values()
        return [WorkerEntry.seen_at(now, self.lease, **row) for row in rows]

    def purge(self, queue_name: str) -> int:
        from . import operations

        return operations.purge(queue_name, using=self.database)

    # -- system checks ----------------------------------------------------------

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        messages = super().check(**kwargs)
        vendor = self.connection.vendor
        if vendor not in ("postgresql", "sqlite"):
            messages.append(
                checks.Error(
                    f"Database {self.database!r} is {vendor}; the database "
                    "backend supports PostgreSQL and SQLite.",
                    id="django_tasks_q.E003",
                )
            )
        if vendor == "postgresql" and not psycopg3_installed():
            messages.append(
                checks.Warning(
                    f"TASKS[{self.alias!r}] is on PostgreSQL without psycopg 3 (import "
                    "psycopg fails): workers cannot be woken by LISTEN/NOTIFY, so they look "
                    f"for new tasks every poll_interval ({self.poll_interval} s).",
                    hint="Install psycopg 3: pip install 'django-tasks-q[postgres]' (or "
                    "[postgres-binary], with its own libpq); Django supports it too.",
                    id="django_tasks_q.W002",
                )
            )
        if vendor == "sqlite":
            import sqlite3  # Django's SQLite backend has loaded it; PostgreSQL's has not

            if sqlite3.sqlite_version_info < (3, 35):
                messages.append(
                    checks.Error(
                        f"SQLite {sqlite3.sqlite_version} is too old: the queue "
                        "needs 3.35 or newer (for RETURNING).",
                        id="django_tasks_q.E004",
                    )
                )
        return messages
