"""What an operator does to the queue: retry, cancel, abort, re-run, delete, purge,
prune; and to periodic tasks: pause, resume.

The admin and the ``taskq`` command both call these; neither touches the
tables itself. Every operation takes a queryset saying *which* rows, and works
set-based: one statement (two on SQLite) moves or deletes up to ``batch_size``
of them, each batch in its own short transaction, so a million-row prune never
holds a lock the workers wait on for long.

Safe against workers claiming at the same moment: the statement that moves a
row re-checks its status (``WHERE status = 'READY'``), so a task a worker has
just claimed (RUNNING) is never cancelled, purged or deleted. On PostgreSQL the
rows are picked with ``FOR UPDATE SKIP LOCKED``, so an operation passes over a
row a worker is claiming instead of waiting for it, and vice versa; on SQLite
the write lock serialises both.
"""

import json
import uuid

from django.core.exceptions import EmptyResultSet
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.tasks import DEFAULT_TASK_BACKEND_ALIAS, task_backends
from django.utils import timezone

from ...exceptions import TaskNotRegistered
from ...ids import uuid7
from ...models import ResultStatus, Task, TaskResult, TaskStatus
from ...registry import resolve
from .listeners import ABORT_CHANNEL, notify

BATCH_SIZE = 1000


RESULT_COLUMNS = (
    "id, task_path, queue_name, priority, status, args, kwargs, return_value, errors, "
    "worker_ids, attempts, enqueued_at, run_after, started_at, last_attempted_at, finished_at"
)
TASK_COLUMNS = (
    "id, task_path, queue_name, priority, status, args, kwargs, run_after, enqueued_at, "
    "started_at, last_attempted_at, attempts, max_attempts, errors, worker_ids"
)

# A waiting task, as a cancelled result.
CANCEL_SELECT = """
    SELECT id, task_path, queue_name, priority, 'CANCELLED', args, kwargs, NULL, errors,
           worker_ids, attempts, enqueued_at, run_after, started_at, last_attempted_at, %s
"""
# A finished result, back in the queue: its attempts, errors and workers kept,
# and one more attempt allowed (a retry that fails again fails, not retries).
RETRY_SELECT = """
    SELECT id, task_path, queue_name, priority, 'READY', args, kwargs, %s, enqueued_at,
           started_at, last_attempted_at, attempts, attempts + 1, errors, worker_ids
"""


def queue_database(backend_alias: str = DEFAULT_TASK_BACKEND_ALIAS) -> str:
    """The database alias that holds ``backend_alias``'s queue."""
    return getattr(task_backends[backend_alias], "database", DEFAULT_DB_ALIAS)


def _selection(queryset, batch_size):
    """SQL for the ids of up to ``batch_size`` rows of ``queryset``, and its params."""
    queryset = queryset.order_by().values("pk")
    if connections[queryset.db].features.has_select_for_update_skip_locked:
        queryset = queryset.select_for_update(skip_locked=True)
    return queryset[:batch_size].query.get_compiler(using=queryset.db).as_sql()


def _in_batches(queryset, batch_size, run) -> int:
    """Call ``run(cursor, selection_sql, params)`` until a batch comes back short.

    Each ``run`` moves or deletes the rows it selected, so the same selection
    finds the next batch. Returns the number of rows ``run`` reported.
    """
    total = 0
    while True:
        with transaction.atomic(using=queryset.db):
            try:  # in the transaction: SELECT ... FOR UPDATE needs one
                sql, params = _selection(queryset, batch_size)
            except EmptyResultSet:  # e.g. pk__in=[]: Django knows nothing can match
                return total
            with connections[queryset.db].cursor() as cursor:
                done = run(cursor, sql, params)
        total += done
        if done < batch_size:
            return total


def _move(cursor, *, source, target, columns, select, select_params, where, params):
    """Move the rows of ``source`` that match ``where`` into ``target``; returns how many."""
    if cursor.db.vendor == "postgresql":
        cursor.execute(
            f"WITH moved AS (DELETE FROM {source} WHERE {where} RETURNING *) "
            f"INSERT INTO {target} ({columns}) {select} FROM moved",
            [*params, *select_params],
        )
        return cursor.rowcount
    # SQLite cannot feed DELETE ... RETURNING into an INSERT: copy, then delete
    # what was copied, in the caller's transaction (SQLite's write lock holds
    # the rows still between the two).
    cursor.execute(
        f"INSERT INTO {target} ({columns}) {select} FROM {source} WHERE {where} RETURNING id",
        [*select_params, *params],
    )
    moved = [row[0] for row in cursor.fetchall()]
    cursor.execute(
        f"DELETE FROM {source} WHERE id IN (SELECT value FROM json_each(%s))",
        [json.dumps(moved)],
    )
    return len(moved)


def cancel(tasks, *, batch_size=BATCH_SIZE) -> int:
    """Move the waiting tasks among ``tasks`` to the history as CANCELLED:
    ready, scheduled, or waiting for other tasks (``after()``).

    Running tasks are left alone. Returns how many were cancelled.
    """
    now = timezone.now()

    def run(cursor, selection, params):
        return _move(
            cursor,
            source="django_tasks_q_task",
            target="django_tasks_q_taskresult",
            columns=RESULT_COLUMNS,
            select=CANCEL_SELECT,
            select_params=[cursor.db.ops.adapt_datetimefield_value(now)],
            where=f"status IN ('READY', 'BLOCKED') AND id IN ({selection})",
            params=params,
        )

    waiting = tasks.filter(status__in=[TaskStatus.READY, TaskStatus.BLOCKED])
    return _in_batches(waiting, batch_size, run)


def abort(tasks) -> tuple[int, int]:
    """Stop ``tasks``: cancel the waiting ones, and ask the workers running the
    others to stop them (they end as CANCELLED; see the README's "Cancelling
    and aborting"). Returns (how many were cancelled, how many asked to stop).
    """
    cancelled = cancel(tasks)
    using = tasks.db
    connection = connections[using]
    try:
        selection, params = tasks.order_by().values("pk").query.get_compiler(using).as_sql()
    except EmptyResultSet:
        return cancelled, 0
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    # Running tasks are few (at most the workers' slots): one statement. The
    # status check is on the updated row itself, so a task claimed while
    # cancel() ran is seen as running once its claim commits.
    mark = f"""
        UPDATE django_tasks_q_task
        SET abort_requested_at = COALESCE(abort_requested_at, %s)
        WHERE status = 'RUNNING' AND id IN ({selection})
    """
    with transaction.atomic(using=using), connection.cursor() as cursor:
        if connection.vendor != "postgresql":  # SQLite: workers poll for it
            cursor.execute(mark, [now, *params])
            return cancelled, cursor.rowcount
        # Wake each worker holding one of them, once, when this commits.
        cursor.execute(
            f"""
            WITH aborting AS ({mark} RETURNING worker_id),
            notified AS (
                SELECT pg_notify('{ABORT_CHANNEL}', worker_id) FROM aborting GROUP BY worker_id
            )
            SELECT (SELECT count(*) FROM aborting), (SELECT count(*) FROM notified)
            """,
            [now, *params],
        )
        return cancelled, cursor.fetchone()[0]


def retry(results, *, batch_size=BATCH_SIZE) -> int:
    """Put the unsuccessful results among ``results`` back in the queue, ready now.

    A retried task keeps its id (``get_result`` follows it), its attempts,
    errors and workers, and may make one more attempt. Successful results are
    left alone: re-run those. Returns how many were put back.
    """
    now = timezone.now()
    statuses = ", ".join(f"'{status}'" for status in ResultStatus.UNSUCCESSFUL)

    def run(cursor, selection, params):
        moved = _move(
            cursor,
            source="django_tasks_q_taskresult",
            target="django_tasks_q_task",
            columns=TASK_COLUMNS,
            select=RETRY_SELECT,
            select_params=[cursor.db.ops.adapt_datetimefield_value(now)],
            where=f"status IN ({statuses}) AND id IN ({selection})",
            params=params,
        )
        if moved:
            notify(cursor, queues)  # wake idle workers when this commits
        return moved

    retryable = results.filter(status__in=ResultStatus.UNSUCCESSFUL)
    queues = sorted(set(retryable.values_list("queue_name", flat=True).distinct()))
    return _in_batches(retryable, batch_size, run)


def _max_attempts(task_path: str) -> int:
    """1 + the task's max_retries, as enqueue() would set it; 1 if it is unknown."""
    try:
        return getattr(resolve(task_path), "max_retries", 0) + 1
    except TaskNotRegistered:
        return 1


RERUN = {
    "postgresql": """
        INSERT INTO django_tasks_q_task
            (id, task_path, queue_name, priority, status, args, kwargs, run_after,
             enqueued_at, attempts, max_attempts, errors, worker_ids)
        SELECT c.new_id, r.task_path, r.queue_name, r.priority, 'READY', r.args, r.kwargs,
               %(now)s, %(now)s, 0, c.max_attempts, '[]', '[]'
        FROM jsonb_to_recordset(%(copies)s::jsonb) AS c(source uuid, new_id uuid, max_attempts int)
        JOIN django_tasks_q_taskresult AS r ON r.id = c.source
    """,
    "sqlite": """
        INSERT INTO django_tasks_q_task
            (id, task_path, queue_name, priority, status, args, kwargs, run_after,
             enqueued_at, attempts, max_attempts, errors, worker_ids)
        SELECT json_extract(c.value, '$.new_id'), r.task_path, r.queue_name, r.priority,
               'READY', r.args, r.kwargs, %(now)s, %(now)s, 0,
               json_extract(c.value, '$.max_attempts'), '[]', '[]'
        FROM json_each(%(copies)s) AS c
        JOIN django_tasks_q_taskresult AS r ON r.id = json_extract(c.value, '$.source')
    """,
}


def rerun(results, *, batch_size=BATCH_SIZE) -> list[str]:
    """Enqueue a fresh copy (new id, no attempts) of each of ``results``.

    The results themselves stay in the history. Returns the new tasks' ids.
    """
    using = results.db
    connection = connections[using]
    hex_ids = connection.vendor == "sqlite"  # how SQLite keeps a UUIDField
    rows = results.order_by("pk").values_list("pk", "task_path")
    new_ids, last = [], None
    while True:
        # The copied rows stay put, so page through them by id.
        batch = list((rows.filter(pk__gt=last) if last else rows)[:batch_size])
        if not batch:
            return new_ids
        last = batch[-1][0]
        copies = [
            {"source": source, "new_id": uuid7(), "max_attempts": _max_attempts(path)}
            for source, path in batch
        ]
        for copy in copies:
            copy["source"] = copy["source"].hex if hex_ids else str(copy["source"])
            new_ids.append(str(copy["new_id"]))
            copy["new_id"] = copy["new_id"].hex if hex_ids else str(copy["new_id"])
        now = connection.ops.adapt_datetimefield_value(timezone.now())
        with transaction.atomic(using=using), connection.cursor() as cursor:
            cursor.execute(RERUN[connection.vendor], {"now": now, "copies": json.dumps(copies)})


def _delete(queryset, table, batch_size, where="TRUE") -> int:
    def run(cursor, selection, params):
        cursor.execute(f"DELETE FROM {table} WHERE {where} AND id IN ({selection})", params)
        return cursor.rowcount

    return _in_batches(queryset, batch_size, run)


def delete_waiting(tasks, *, batch_size=BATCH_SIZE) -> int:
    """Delete the waiting tasks among ``tasks``, leaving no result. Running ones stay."""
    return _delete(
        tasks.filter(status=TaskStatus.READY),
        "django_tasks_q_task",
        batch_size,
        where="status = 'READY'",
    )


def purge(queue_name: str, *, using=None, batch_size=BATCH_SIZE) -> int:
    """Delete every waiting task of ``queue_name``; running ones finish as usual."""
    tasks = Task.objects.using(using or queue_database()).filter(queue_name=queue_name)
    return delete_waiting(tasks, batch_size=batch_size)


def delete_results(results, *, batch_size=BATCH_SIZE) -> int:
    """Delete ``results`` from the history."""
    return _delete(results, "django_tasks_q_taskresult", batch_size)


def prune(older_than, *, using=None, statuses=None, batch_size=BATCH_SIZE) -> int:
    """Delete results that finished more than ``older_than`` (a timedelta) ago.

    In batches of ``batch_size``, each its own transaction, so workers recording
    results are never held up for long. ``statuses`` limits it to those.
    """
    results = TaskResult.objects.using(using or queue_database()).filter(
        finished_at__lt=timezone.now() - older_than
    )
    if statuses:
        results = results.filter(status__in=statuses)
    return delete_results(results, batch_size=batch_size)


def pause_schedules(schedules) -> int:
    """Stop these schedules enqueueing; returns how many were not paused already."""
    return schedules.filter(paused=False).update(paused=True)


def resume_schedules(schedules) -> int:
    """Start these paused schedules again at their next tick after now: ticks
    that came while they were paused are not run. Returns how many resumed."""
    # A worker computes the next tick (it has the declaration; this process may not).
    return schedules.filter(paused=True).update(paused=False, next_tick_at=None)


def parse_ids(values) -> list[uuid.UUID]:
    """Task ids given by a person, as UUIDs; ValueError names the bad one."""
    ids = []
    for value in values:
        try:
            ids.append(uuid.UUID(str(value).strip()))
        except ValueError:
            raise ValueError(f"{value!r} is not a task id.") from None
    return ids
