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
from collections.abc import Mapping, Sequence

from django.db import connections, transaction
from django.utils import timezone

from ...compat import TaskResultDoesNotExist
from ...exceptions import DependencyFailed, FallbackNotNeeded
from ...models import ResultStatus, RunOn, Task, TaskDependency, TaskResult, TaskStatus
from ..contract import EnqueueBatch
from .statements import statements_for

SWEEP_BATCH = 1000  # children one sweep resolves at most


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


def pass_on(using: str, ended_ids: Sequence[str | uuid.UUID]) -> None:
    """``ended_ids`` left the queue with ``has_dependents`` set: wake whoever
    waits for them, and resolve their children (and theirs, if cancelled)."""
    connection = connections[using]
    statements = statements_for(connection)
    while ended_ids:
        with connection.cursor() as cursor:
            statements.notify_finished(cursor, ended_ids)
        children = TaskDependency.objects.using(using).filter(parent__in=ended_ids)
        ended_ids = resolve(using, list(children.values_list("child", flat=True).distinct()))


def sweep(using: str, limit: int = SWEEP_BATCH) -> int:
    """Resolve children whose parents ended without passing it on; returns how many."""
    connection = connections[using]
    with connection.cursor() as cursor:
        children = statements_for(connection).stuck_children(cursor, limit)
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
                and (parent not in ended or ended[parent]["status"] != ResultStatus.SUCCESSFUL)
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
        connection = connections[using]
        with connection.cursor() as cursor:  # wake idle workers on commit
            queues = sorted({waiting[child]["queue_name"] for child in first_args})
            statements_for(connection).notify(cursor, queues)
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
    """End the children in ``errors`` as CANCELLED with that error; returns
    those that have dependents of their own."""
    connection = connections[using]
    with connection.cursor() as cursor:
        ended = statements_for(connection).cancel_blocked(
            cursor, {str(child): error for child, error in errors.items()}, timezone.now()
        )
    return [uuid.UUID(child) for child in ended.with_dependents]


def _ending(parent: uuid.UUID, ended: Mapping[uuid.UUID, Mapping[str, object]]) -> str:
    if parent not in ended:
        return f"task {parent} it waited for was deleted"
    row = ended[parent]
    return f"task {parent} ({row['task_path']}) it waited for ended {row['status']}"


def _error(exception_class: type[Exception], message: str) -> dict[str, str]:
    path = f"{exception_class.__module__}.{exception_class.__qualname__}"
    return {"exception_class_path": path, "traceback": f"{path}: {message}\n"}
