"""Chains on the database backend: tasks that wait for others (``QTask.after``).

A task enqueued with ``after()`` is written BLOCKED, with one
``TaskDependency`` row per task it waits for (its parents, in order); workers
never claim a BLOCKED task. Once its parents have ended, the child is
*resolved*: made READY, with its parents' return values (or the id of the
parent that did not succeed) put before its arguments, or moved to the
history as CANCELLED.

Who resolves a child, with no lock held for longer than a short transaction:

* the worker that records a parent: a parent with children carries
  ``has_dependents``, which the FINISH statement hands back, and the worker
  resolves the children in the transaction that records the parent;
* the enqueuer, once its transaction has committed (``link``): it sets
  ``has_dependents`` on the parents, and resolves the child if they have
  already ended. Its UPDATE waits for a worker deleting a parent at that
  moment, and a worker that deletes the parent afterwards sees the flag, so
  one of the two always sees the other;
* any worker's periodic ``sweep``, for parents that ended in other ways
  (cancelled or deleted by an operator, failed by lease recovery, expired)
  and for a ``link`` that never ran (its process died).

While a child is resolved its row is locked (FOR UPDATE, in id order), so two
workers recording two of its parents at once take turns, and the second sees
the first's parent ended. Resolving is not on the worker's hot path: it runs
only for tasks that have dependents or waiters, so it uses the ORM.
"""

import uuid
from collections import defaultdict

from django.db import connections, transaction
from django.tasks.exceptions import TaskResultDoesNotExist
from django.utils import timezone

from ...exceptions import DependencyFailed, FallbackNotNeeded
from ...models import ResultStatus, RunOn, Task, TaskDependency, TaskResult, TaskStatus
from ..contract import EnqueueBatch
from .listeners import notify
from .result_listener import notify_finished

SWEEP_BATCH = 1000  # children one sweep resolves at most

# Children that can be resolved now, or whose dependencies are left over (the
# child is no longer waiting): some parent left the queue without
# succeeding, or every parent has left it.
STUCK = """
    SELECT d.child FROM django_tasks_q_taskdependency AS d
    LEFT JOIN django_tasks_q_task AS c ON c.id = d.child AND c.status = 'BLOCKED'
    LEFT JOIN django_tasks_q_task AS p ON p.id = d.parent
    LEFT JOIN django_tasks_q_taskresult AS r ON r.id = d.parent
    GROUP BY d.child
    HAVING count(c.id) = 0 OR count(p.id) = 0
        OR count(CASE WHEN p.id IS NULL AND (r.status IS NULL OR r.status <> 'SUCCESSFUL')
                      THEN 1 END) > 0
    LIMIT %s
"""

# What a cancelled child's result keeps of its row.
COPIED_FIELDS = (
    "id",
    "task_path",
    "queue_name",
    "priority",
    "args",
    "kwargs",
    "worker_ids",
    "attempts",
    "enqueued_at",
    "run_after",
    "started_at",
    "last_attempted_at",
)


def hold(using: str, batch: EnqueueBatch, child_ids: list[uuid.UUID]) -> None:
    """In the enqueuing transaction: make the just-inserted ``child_ids`` wait
    for ``batch.waits_for``. TaskResultDoesNotExist if one of those is unknown."""
    parents = [uuid.UUID(parent) for parent in batch.waits_for]
    known = {
        *Task.objects.using(using).filter(pk__in=parents).values_list("pk", flat=True),
        *TaskResult.objects.using(using).filter(pk__in=parents).values_list("pk", flat=True),
    }
    if missing := [str(parent) for parent in parents if parent not in known]:
        raise TaskResultDoesNotExist(f"after(): there is no task {', '.join(missing)}.")
    Task.objects.using(using).filter(pk__in=child_ids).update(
        status=TaskStatus.BLOCKED, run_on=batch.run_on
    )
    TaskDependency.objects.using(using).bulk_create(
        TaskDependency(child=child, parent=parent, position=position)
        for child in child_ids
        for position, parent in enumerate(parents)
    )


def link(using: str, child_ids: list[uuid.UUID], parent_ids: list[str]) -> None:
    """Once the children are committed: flag their parents, and resolve the
    children whose parents have already ended."""
    with transaction.atomic(using=using):
        Task.objects.using(using).filter(pk__in=parent_ids).update(has_dependents=True)
        pass_on(using, resolve(using, child_ids))


def pass_on(using: str, ended_ids) -> None:
    """``ended_ids`` left the queue with ``has_dependents`` set: wake whoever
    waits for them, and resolve their children (and theirs, if cancelled)."""
    while ended_ids:
        notify_finished(connections[using], ended_ids)
        children = TaskDependency.objects.using(using).filter(parent__in=ended_ids)
        ended_ids = resolve(using, list(children.values_list("child", flat=True).distinct()))


def sweep(using: str, limit: int = SWEEP_BATCH) -> int:
    """Resolve children whose parents ended without passing it on; returns how many."""
    with connections[using].cursor() as cursor:
        cursor.execute(STUCK, [limit])
        children = [uuid.UUID(str(row[0])) for row in cursor.fetchall()]
    if children:  # a write transaction only when there is something to do
        with transaction.atomic(using=using):
            pass_on(using, resolve(using, children))
    return len(children)


def resolve(using: str, child_ids: list) -> list:
    """Make READY or CANCELLED each of ``child_ids`` whose parents allow it.

    Returns the ids of the cancelled children that have dependents of their
    own, for ``pass_on``.
    """
    if not child_ids:
        return []
    tasks = Task.objects.using(using)
    waiting = {
        row["id"]: row
        for row in tasks.select_for_update()
        .filter(pk__in=child_ids, status=TaskStatus.BLOCKED)
        .order_by("pk")
        .values("id", "run_on", "args", "queue_name")
    }
    dependencies = TaskDependency.objects.using(using).filter(child__in=child_ids)
    parents_of = defaultdict(list)
    for child, parent in dependencies.order_by("child", "position").values_list("child", "parent"):
        parents_of[child].append(parent)
    every_parent = {parent for child in waiting for parent in parents_of[child]}
    queued = set(tasks.filter(pk__in=every_parent).values_list("pk", flat=True))
    ended = {
        row["id"]: row
        for row in TaskResult.objects.using(using)
        .filter(pk__in=every_parent - queued)
        .values("id", "status", "task_path")
    }

    first_args, succeeded, cancelled = {}, {}, {}  # by child id
    for child, row in waiting.items():
        parents = parents_of[child]
        unsuccessful = next(
            (
                parent
                for parent in parents
                if parent not in queued
                and ended.get(parent, {}).get("status") != ResultStatus.SUCCESSFUL
            ),
            None,
        )
        if unsuccessful is not None:
            if row["run_on"] == RunOn.FAILURE:
                first_args[child] = str(unsuccessful)
            else:
                cancelled[child] = _error(DependencyFailed, _ending(unsuccessful, ended))
        elif not queued.intersection(parents):
            if row["run_on"] == RunOn.SUCCESS:
                succeeded[child] = parents
            else:
                cancelled[child] = _error(
                    FallbackNotNeeded, "every task it waited for succeeded: not needed"
                )
    first_args |= _return_values(using, succeeded)

    if first_args:
        tasks.bulk_update(
            [
                Task(id=child, status=TaskStatus.READY, args=[value, *waiting[child]["args"]])
                for child, value in first_args.items()
            ],
            ["status", "args"],
        )
        with connections[using].cursor() as cursor:  # wake idle workers on commit
            notify(cursor, sorted({waiting[child]["queue_name"] for child in first_args}))
    passed_on = _cancel(using, cancelled) if cancelled else []
    resolved_or_gone = set(first_args) | set(cancelled) | (set(parents_of) - set(waiting))
    if resolved_or_gone:
        dependencies.filter(child__in=resolved_or_gone).delete()
    return passed_on


def _return_values(using: str, parents_of: dict) -> dict:
    """Each child's first argument: its one parent's return value, or a list
    of its parents' return values, in order."""
    wanted = {parent for parents in parents_of.values() for parent in parents}
    if not wanted:
        return {}
    results = TaskResult.objects.using(using).filter(pk__in=wanted)
    values = dict(results.values_list("pk", "return_value"))
    return {
        child: values[parents[0]] if len(parents) == 1 else [values[p] for p in parents]
        for child, parents in parents_of.items()
    }


def _cancel(using: str, errors: dict) -> list:
    """Move the children in ``errors`` to the history as CANCELLED with that
    error; returns those that have dependents of their own."""
    tasks = Task.objects.using(using).filter(pk__in=errors)
    rows = list(tasks.values(*COPIED_FIELDS, "errors", "has_dependents"))
    now = timezone.now()
    TaskResult.objects.using(using).bulk_create(
        TaskResult(
            **{field: row[field] for field in COPIED_FIELDS},
            status=ResultStatus.CANCELLED,
            errors=[*row["errors"], errors[row["id"]]],
            finished_at=now,
        )
        for row in rows
    )
    tasks.delete()
    return [row["id"] for row in rows if row["has_dependents"]]


def _ending(parent, ended: dict) -> str:
    if parent not in ended:
        return f"task {parent} it waited for was deleted"
    row = ended[parent]
    return f"task {parent} ({row['task_path']}) it waited for ended {row['status']}"


def _error(exception_class, message: str) -> dict:
    path = f"{exception_class.__module__}.{exception_class.__qualname__}"
    return {"exception_class_path": path, "traceback": f"{path}: {message}\n"}
