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

A parent may be a group (groups.py): one TaskDependency on the group's id,
however many members it has. The group counts as ended once no member is
left in the queue, as succeeded if every member did, and its value is the
list of its members' values in call order. ``link`` flags every member
(``has_dependents``), so whoever ends one passes it on to the group's
children, and the sweep looks for groups with no member left.

While a child is resolved its row is locked (FOR UPDATE, in id order), so two
workers recording two of its parents at once take turns, and the second sees
the first's parent ended. Resolving is not on the worker's hot path: it runs
only for tasks that have dependents or waiters, so it uses the ORM.
"""

import uuid
from collections import defaultdict
from collections.abc import Sequence

from django.db import connections, transaction
from django.utils import timezone

from ...compat import TaskResultDoesNotExist
from ...exceptions import DependencyFailed, FallbackNotNeeded
from ...models import ResultStatus, RunOn, Task, TaskDependency, TaskResult, TaskStatus
from ..contract import EnqueueBatch
from . import groups as group_store
from .statements import statements_for

SWEEP_BATCH = 1000  # children one sweep resolves at most


def hold(using: str, batch: EnqueueBatch, child_ids: list[uuid.UUID]) -> None:
    """In the enqueuing transaction: make the just-inserted ``child_ids`` wait
    for ``batch.waits_for``. TaskResultDoesNotExist if one of those is unknown."""
    parents = [uuid.UUID(parent) for parent in batch.waits_for]
    known = {
        *Task.objects.using(using).filter(pk__in=parents).values_list("pk", flat=True),
        *TaskResult.objects.using(using).filter(pk__in=parents).values_list("pk", flat=True),
        *group_store.groups_among(using, parents),
    }
    if missing := [str(parent) for parent in parents if parent not in known]:
        raise TaskResultDoesNotExist(f"after(): there is no task or group {', '.join(missing)}.")
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
        Task.objects.using(using).filter(group_id__in=parent_ids).update(has_dependents=True)
        pass_on(using, resolve(using, child_ids))


def pass_on(using: str, ended_ids: Sequence[str | uuid.UUID]) -> None:
    """``ended_ids`` left the queue with ``has_dependents`` set: wake whoever
    waits for them, and resolve their children (and theirs, if cancelled)."""
    connection = connections[using]
    statements = statements_for(connection)
    while ended_ids:
        with connection.cursor() as cursor:
            statements.notify_finished(cursor, ended_ids)
        parents = [*ended_ids, *group_store.of_ended(using, ended_ids)]
        children = TaskDependency.objects.using(using).filter(parent__in=parents)
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
    groups = group_store.groups_among(using, every_parent)
    queued = set(tasks.filter(pk__in=every_parent - set(groups)).values_list("pk", flat=True))
    queued |= group_store.with_queued_members(using, groups)
    # Each ended parent: whether it succeeded, and how it ended, in words.
    endings = {p: (False, f"task {p} it waited for was deleted") for p in every_parent}
    for pk, status, path in (
        TaskResult.objects.using(using)
        .filter(pk__in=every_parent - queued - set(groups))
        .values_list("id", "status", "task_path")
    ):
        endings[pk] = (
            status == ResultStatus.SUCCESSFUL,
            f"task {pk} ({path}) it waited for ended {status}",
        )
    ended_groups = [group for pk, group in groups.items() if pk not in queued]
    for pk, ending in group_store.endings(using, ended_groups).items():
        endings[pk] = (ending.all_succeeded, ending.describe())

    first_args, succeeded, cancelled = {}, {}, {}  # by child id
    for child, row in waiting.items():
        parents = parents_of[child]
        unsuccessful = next(
            (parent for parent in parents if parent not in queued and not endings[parent][0]),
            None,
        )
        if unsuccessful is not None:
            if row["run_on"] == RunOn.FAILURE:
                first_args[child] = str(unsuccessful)
            else:
                cancelled[child] = _error(DependencyFailed, endings[unsuccessful][1])
        elif not queued.intersection(parents):
            if row["run_on"] == RunOn.SUCCESS:
                succeeded[child] = parents
            else:
                cancelled[child] = _error(
                    FallbackNotNeeded, "every task it waited for succeeded: not needed"
                )
    first_args |= _return_values(using, succeeded, set(groups))

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


def _return_values(using: str, parents_of: dict, groups: set) -> dict:
    """Each child's first argument: its one parent's return value, or a list
    of its parents' return values, in order (a group's: a list of its members')."""
    wanted = {parent for parents in parents_of.values() for parent in parents}
    if not wanted:
        return {}
    results = TaskResult.objects.using(using).filter(pk__in=wanted - groups)
    values = dict(results.values_list("pk", "return_value"))
    values |= group_store.return_values(using, wanted & groups)
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


def _error(exception_class: type[Exception], message: str) -> dict[str, str]:
    path = f"{exception_class.__module__}.{exception_class.__qualname__}"
    return {"exception_class_path": path, "traceback": f"{path}: {message}\n"}
