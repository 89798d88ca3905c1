"""Groups on the database backend (``QTask.enqueue_group``).

A group is a ``TaskGroup`` row (its size) and its members, which carry its
id in ``group_id`` in the queue and in the history: the INSERT that queues
them writes it, and ``end()`` moves it with them. So a group's progress is
two counts over the partial indexes on ``group_id``, whatever the size of
the queue, and its members' call order is their ids' (UUIDv7, increasing
within the enqueuing process).

A task that waits for a group (``after(group)``) is a chain whose parent is
the group's id; chains.py resolves it once no member is left in the queue.
"""

import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Count, Exists, OuterRef, Q, QuerySet

from ...compat import TaskResultDoesNotExist
from ...groups import GroupProgress
from ...models import ResultStatus, Task, TaskGroup, TaskResult, TaskStatus
from ..contract import EnqueueBatch

# Progress counts these history statuses as failed; CANCELLED is counted apart.
FAILED = (ResultStatus.FAILED, ResultStatus.EXPIRED)


def create(using: str, batch: EnqueueBatch) -> None:
    """In the enqueuing transaction: the group row for ``batch``'s calls."""
    assert batch.group_id is not None
    TaskGroup.objects.using(using).create(
        id=batch.group_id,
        task_path=batch.task.module_path,
        queue_name=batch.task.queue_name,
        size=len(batch.ids),
        enqueued_at=batch.enqueued_at,
    )


def get(using: str, group_id: str) -> TaskGroup:
    try:
        pk = uuid.UUID(str(group_id))
    except ValueError:
        raise TaskResultDoesNotExist(group_id) from None
    try:
        return TaskGroup.objects.using(using).get(pk=pk)
    except TaskGroup.DoesNotExist:
        raise TaskResultDoesNotExist(group_id) from None


def progress(using: str, group: TaskGroup) -> GroupProgress:
    # One statement, so one snapshot: with a query per table, a member that
    # ended between them was counted twice (queued, then finished).
    queued, finished = (
        model.objects.using(using)
        .filter(group_id=group.pk)
        .values_list("status")
        .annotate(Count("pk"))
        .order_by()
        for model in (Task, TaskResult)
    )
    counts: dict[str, int] = defaultdict(int)
    for status, count in queued.union(finished, all=True):
        counts[status] += count
    return GroupProgress(
        total=group.size,
        waiting=counts[TaskStatus.READY] + counts[TaskStatus.BLOCKED],
        running=counts[TaskStatus.RUNNING],
        succeeded=counts[ResultStatus.SUCCESSFUL],
        failed=sum(counts[status] for status in FAILED),
        cancelled=counts[ResultStatus.CANCELLED],
    )


def queued_members(using: str, group: TaskGroup) -> "QuerySet[Task]":
    return Task.objects.using(using).filter(group_id=group.pk)


def finished_members(using: str, group: TaskGroup) -> "QuerySet[TaskResult]":
    return TaskResult.objects.using(using).filter(group_id=group.pk)


def prune(using: str, before: datetime, limit: int = 1000) -> int:
    """Delete up to ``limit`` groups enqueued before ``before`` with no member
    left, in the queue or the history (their results were pruned); returns
    how many."""
    gone = TaskGroup.objects.using(using).filter(enqueued_at__lt=before)
    for model in (Task, TaskResult):
        gone = gone.exclude(Exists(model.objects.using(using).filter(group_id=OuterRef("pk"))))
    ids = list(gone.values_list("pk", flat=True)[:limit])
    return TaskGroup.objects.using(using).filter(pk__in=ids).delete()[0] if ids else 0


# -- for chains.py: a group as the parent of a waiting task -------------------------


@dataclass(frozen=True, slots=True)
class GroupEnding:
    """How a group that has left the queue ended, for the tasks waiting for it."""

    group: TaskGroup
    succeeded: int  # members that succeeded; the rest failed, were cancelled or deleted

    @property
    def all_succeeded(self) -> bool:
        return self.succeeded == self.group.size

    def describe(self) -> str:
        group = self.group
        return (
            f"group {group.pk} ({group.task_path}) it waited for ended with "
            f"{group.size - self.succeeded} of its {group.size} members unsuccessful"
        )


def groups_among(using: str, ids: Iterable[Any]) -> dict[uuid.UUID, TaskGroup]:
    """The groups among ``ids`` (the parents of waiting tasks), by id."""
    return TaskGroup.objects.using(using).in_bulk(list(ids))


def with_queued_members(using: str, group_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    """Those of ``group_ids`` with a member still in the queue."""
    # One index probe per group (EXISTS stops at the first member), not a
    # read of every member left: this runs each time a member of a group
    # with a waiting task ends.
    member = Task.objects.using(using).filter(group_id=OuterRef("pk"))
    groups = TaskGroup.objects.using(using).filter(pk__in=list(group_ids))
    return set(groups.filter(Exists(member)).values_list("pk", flat=True))


def endings(using: str, groups: Iterable[TaskGroup]) -> dict[uuid.UUID, GroupEnding]:
    """How ``groups`` (none of whose members is queued) ended."""
    by_id = {group.pk: group for group in groups}
    succeeded = dict(
        TaskResult.objects.using(using)
        .filter(group_id__in=list(by_id))
        .values_list("group_id")
        .annotate(n=Count("pk", filter=Q(status=ResultStatus.SUCCESSFUL)))
        .order_by()
    )
    return {pk: GroupEnding(group, succeeded.get(pk, 0)) for pk, group in by_id.items()}


def return_values(using: str, group_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, list[Any]]:
    """Each group's members' return values, in call order."""
    values: dict[uuid.UUID, list[Any]] = defaultdict(list)
    rows = TaskResult.objects.using(using).filter(group_id__in=list(group_ids))
    for group_id, value in rows.order_by("group_id", "id").values_list("group_id", "return_value"):
        values[group_id].append(value)  # type: ignore[index]  # the filter has no NULL
    return values


def of_ended(using: str, task_ids: Iterable[str | uuid.UUID]) -> list[uuid.UUID]:
    """The groups of the just-ended tasks ``task_ids`` (in the history now)."""
    ended = TaskResult.objects.using(using).filter(pk__in=list(task_ids), group_id__isnull=False)
    return [pk for pk in ended.values_list("group_id", flat=True).distinct() if pk]
