"""What an operator does to the queue's tables: retry, cancel, abort, re-run,
delete, purge, prune; and to periodic tasks: pause, resume.

The admin and the ``taskq`` command both call these (through ``actions.py``);
neither touches the tables itself. Every operation takes a queryset saying
*which* rows, and works set-based, a batch of up to ``batch_size`` rows at a
time, each in its own short transaction, so a million-row prune never holds a
lock the workers wait on for long: the batch's ids are picked (on PostgreSQL
with ``FOR UPDATE SKIP LOCKED``, so an operation passes over a row a worker is
claiming instead of waiting for it, and vice versa; on SQLite the write lock
serialises both), then one statement of ``statements.py`` acts on them.

Safe against workers claiming at the same moment: the statement re-checks
each row's status, so a task a worker has just claimed (RUNNING) is never
cancelled, purged or deleted.
"""

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.db import connections, transaction
from django.db.models import QuerySet
from django.utils import timezone

from ...compat import DEFAULT_TASK_BACKEND_ALIAS, task_backends
from ...exceptions import TaskNotRegistered
from ...ids import uuid7
from ...models import ResultStatus, Schedule, Task, TaskResult, TaskStatus
from ...registry import resolve
from . import chains, groups
from .statements import Statements, statements_for

BATCH_SIZE = 1000


def queue_database(backend_alias: str = DEFAULT_TASK_BACKEND_ALIAS) -> str:
    """The database alias that holds ``backend_alias``'s queue."""
    database: str = task_backends[backend_alias].database  # type: ignore[attr-defined]
    return database


def _batch(queryset: QuerySet[Any], batch_size: int) -> list[uuid.UUID]:
    """The ids of up to ``batch_size`` rows of ``queryset``, locked (skipping
    rows others hold) where the database can: call it in a transaction."""
    rows = queryset.order_by().values_list("pk", flat=True)
    if connections[queryset.db].features.has_select_for_update_skip_locked:
        rows = rows.select_for_update(skip_locked=True)
    return list(rows[:batch_size])


def _in_batches(
    queryset: QuerySet[Any],
    batch_size: int,
    run: Callable[[Statements, Any, list[uuid.UUID]], int],
) -> int:
    """Call ``run(statements, cursor, ids)`` on batches of ``queryset`` until a
    batch comes back short; returns the rows ``run`` reported.

    Each ``run`` moves or deletes the rows it got, so the same queryset finds
    the next batch (or rows that changed meanwhile no longer match it)."""
    connection = connections[queryset.db]
    statements, total = statements_for(connection), 0
    while True:
        with transaction.atomic(using=queryset.db):
            ids = _batch(queryset, batch_size)
            if not ids:
                return total
            with connection.cursor() as cursor:
                total += run(statements, cursor, ids)
        if len(ids) < batch_size:
            return total


def cancel(tasks: QuerySet[Task], *, batch_size: int = BATCH_SIZE) -> int:
    """End the tasks among ``tasks`` that have not started as CANCELLED: ready,
    scheduled, or blocked by others (``after()``), and pass that on to the
    tasks waiting for them. Running tasks are left alone. Returns how many."""
    now = timezone.now()

    def run(statements: Statements, cursor: Any, ids: list[uuid.UUID]) -> int:
        ended = statements.cancel(cursor, ids, now)
        if ended.with_dependents:
            chains.pass_on(tasks.db, ended.with_dependents)
        return len(ended)

    not_started = tasks.filter(status__in=TaskStatus.NOT_STARTED)
    return _in_batches(not_started, batch_size, run)


def abort(tasks: QuerySet[Task]) -> tuple[int, int]:
    """Stop ``tasks``: cancel those not started, and ask the workers running the
    others to stop them (they end as CANCELLED; see the docs' "Cancelling
    and aborting"). Returns (how many were cancelled, how many asked to stop).
    """
    cancelled = cancel(tasks)
    # Running tasks are few (at most the workers' slots): one batch.
    running = list(tasks.filter(status=TaskStatus.RUNNING).values_list("pk", flat=True))
    if not running:
        return cancelled, 0
    connection = connections[tasks.db]
    with transaction.atomic(using=tasks.db), connection.cursor() as cursor:
        asked = statements_for(connection).mark_aborts(cursor, running, timezone.now())
    return cancelled, asked


def retry(results: QuerySet[TaskResult], *, batch_size: int = BATCH_SIZE) -> int:
    """Put the unsuccessful results among ``results`` back in the queue, ready now.

    A retried task keeps its id (``get_result`` follows it), its attempts,
    errors and workers, and may make one more attempt. Successful results are
    left alone: re-run those. Returns how many were put back.
    """
    now = timezone.now()

    def run(statements: Statements, cursor: Any, ids: list[uuid.UUID]) -> int:
        return statements.requeue_results(cursor, ids, now)

    return _in_batches(results.filter(status__in=ResultStatus.UNSUCCESSFUL), batch_size, run)


def _max_attempts(task_path: str) -> int:
    """1 + the task's max_retries, as enqueue() would set it; 1 if it is unknown."""
    try:
        return getattr(resolve(task_path), "max_retries", 0) + 1
    except TaskNotRegistered:
        return 1


def rerun(results: QuerySet[TaskResult], *, batch_size: int = BATCH_SIZE) -> list[str]:
    """Enqueue a fresh copy (new id, no attempts) of each of ``results``.

    The results themselves stay in the history. Returns the new tasks' ids.
    """
    connection = connections[results.db]
    statements = statements_for(connection)
    rows = results.order_by("pk").values_list("pk", "task_path")
    new_ids: list[str] = []
    last = None
    while True:
        # The copied rows stay put, so page through them by id.
        batch = list((rows.filter(pk__gt=last) if last else rows)[:batch_size])
        if not batch:
            return new_ids
        last = batch[-1][0]
        copies = [(source, str(uuid7()), _max_attempts(path)) for source, path in batch]
        with transaction.atomic(using=results.db), connection.cursor() as cursor:
            statements.rerun(cursor, copies, timezone.now())
        new_ids += [new_id for _, new_id, _ in copies]


def delete_waiting(tasks: QuerySet[Task], *, batch_size: int = BATCH_SIZE) -> int:
    """Delete the waiting tasks among ``tasks``, leaving no result. Running ones stay."""

    def run(statements: Statements, cursor: Any, ids: list[uuid.UUID]) -> int:
        return statements.delete_waiting(cursor, ids)

    return _in_batches(tasks.filter(status=TaskStatus.READY), batch_size, run)


def purge(queue_name: str, *, using: str | None = None, batch_size: int = BATCH_SIZE) -> int:
    """Delete every waiting task of ``queue_name``; running ones finish as usual."""
    tasks = Task.objects.using(using or queue_database()).filter(queue_name=queue_name)
    return delete_waiting(tasks, batch_size=batch_size)


def delete_results(results: QuerySet[TaskResult], *, batch_size: int = BATCH_SIZE) -> int:
    """Delete ``results`` from the history."""

    def run(statements: Statements, cursor: Any, ids: list[uuid.UUID]) -> int:
        return statements.delete_results(cursor, ids)

    return _in_batches(results, batch_size, run)


def prune(
    older_than: timedelta,
    *,
    using: str | None = None,
    statuses: list[str] | None = None,
    batch_size: int = BATCH_SIZE,
) -> int:
    """Delete results that finished more than ``older_than`` ago, and the
    groups enqueued before then whose members are all gone.

    In batches of ``batch_size``, each its own transaction, so workers recording
    results are never held up for long. ``statuses`` limits it to those.
    """
    using = using or queue_database()
    before = timezone.now() - older_than
    results = TaskResult.objects.using(using).filter(finished_at__lt=before)
    if statuses:
        results = results.filter(status__in=statuses)
    pruned = delete_results(results, batch_size=batch_size)
    # Then the groups that have no member left: a batch at a time, as results.
    while groups.prune(using, before, batch_size) == batch_size:
        continue
    return pruned


def pause_schedules(schedules: QuerySet[Schedule]) -> int:
    """Stop these schedules enqueueing; returns how many were not paused already."""
    return schedules.filter(paused=False).update(paused=True)


def resume_schedules(schedules: QuerySet[Schedule]) -> int:
    """Start these paused schedules again at their next tick after now: ticks
    that came while they were paused are not run. Returns how many resumed."""
    # A worker computes the next tick (it has the declaration; this process may not).
    return schedules.filter(paused=True).update(paused=False, next_tick_at=None)


def parse_ids(values: list[str]) -> list[uuid.UUID]:
    """Task ids given by a person, as UUIDs; ValueError names the bad one."""
    ids = []
    for value in values:
        try:
            ids.append(uuid.UUID(str(value).strip()))
        except ValueError:
            raise ValueError(f"{value!r} is not a task id.") from None
    return ids
