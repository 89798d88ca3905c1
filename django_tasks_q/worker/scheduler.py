"""A worker's part in periodic tasks: enqueue each due tick exactly once.

Every worker runs this and none leads, so no schedule stops when a worker
dies. A tick is enqueued by the transaction that moves its schedule on with a
compare-and-set (``UPDATE … SET next_tick_at = <the following tick> WHERE
next_tick_at = <the tick this worker saw due>``): of the workers that saw the
tick, one UPDATE matches and the others change nothing. The task's INSERT is in
the same transaction, so the schedule moves on if and only if its task is queued.
"""

import logging
from datetime import datetime

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from ..backends.contract import WorkerStore
from ..models import Schedule
from ..schedules import RUN_ONCE, PeriodicSchedule

logger = logging.getLogger("django_tasks_q.scheduler")


class Scheduler:
    def __init__(self, backend: WorkerStore, schedules: list[PeriodicSchedule]) -> None:
        self.backend = backend
        self.schedules = {schedule.name: schedule for schedule in schedules}
        self._synced = False
        self.next_due: datetime | None = None  # set by run_due()

    @property
    def rows(self) -> QuerySet[Schedule]:
        return Schedule.objects.using(self.backend.database)

    def sync(self) -> None:
        """Add a row for each new schedule; for one whose task or rule changed,
        start again from its next tick. ``paused`` is the operators', never touched."""
        stored = {
            name: (task_path, description)
            for name, task_path, description in self.rows.filter(
                name__in=self.schedules
            ).values_list("name", "task_path", "description")
        }
        self.rows.bulk_create(
            [
                Schedule(name=name, task_path=s.task.module_path, description=s.description)
                for name, s in self.schedules.items()
                if name not in stored
            ],
            ignore_conflicts=True,  # another worker starting at the same time
        )
        for name, s in self.schedules.items():
            if stored.get(name, (s.task.module_path, s.description)) != (
                s.task.module_path,
                s.description,
            ):
                # Conditional, so of several workers starting with the new
                # declaration only the first resets next_tick_at.
                self.rows.filter(name=name).exclude(
                    task_path=s.task.module_path, description=s.description
                ).update(task_path=s.task.module_path, description=s.description, next_tick_at=None)
        self._synced = True

    def run_due(self, now: datetime | None = None) -> int:
        """Enqueue the ticks due at ``now``; returns how many this worker enqueued.

        Sets ``next_due``: the earliest tick still to come, so the worker can
        look again right then (every worker does: they race, the CAS decides).
        """
        if not self._synced:
            self.sync()
        now = now or timezone.now()
        stored = self.rows.filter(name__in=self.schedules, paused=False)
        enqueued = 0
        upcoming: list[datetime] = []
        for name, seen in stored.values_list("name", "next_tick_at"):
            if seen is not None and seen > now:
                upcoming.append(seen)
                continue
            count, following = self._advance(self.schedules[name], seen, now)
            enqueued += count
            upcoming.append(following)
        self.next_due = min(upcoming, default=None)
        return enqueued

    def _advance(
        self, schedule: PeriodicSchedule, seen: datetime | None, now: datetime
    ) -> tuple[int, datetime]:
        """Move ``schedule`` on from the next tick ``seen``, enqueueing what is due.
        Returns how many ticks this worker enqueued, and the schedule's next tick."""
        due = schedule.due(seen, now)
        changes: dict[str, datetime] = {"next_tick_at": due.next_tick}
        if due.ticks:
            changes["last_tick_at"] = due.ticks[-1]
        with transaction.atomic(using=self.backend.database):
            moved = self.rows.filter(name=schedule.name, next_tick_at=seen, paused=False)
            if not moved.update(**changes):
                # Another worker was first (or it was paused meanwhile).
                return 0, due.next_tick
            # Through the task's backend (this worker's): its INSERT joins this transaction.
            results = [
                schedule.task.using(run_after=tick).enqueue(*schedule.args, **schedule.kwargs)
                for tick in due.ticks
            ]
            if results:
                self.rows.filter(name=schedule.name).update(last_task_id=results[-1].id)
        if due.missed_from is not None:
            logger.warning(
                "Schedule %s missed its ticks from %s (no worker ran): %s",
                schedule.name,
                due.missed_from.isoformat(),
                "ran once" if schedule.missed == RUN_ONCE else "skipped",
            )
        for tick, result in zip(due.ticks, results, strict=True):
            logger.info(
                "Schedule %s: tick %s enqueued as task %s",
                schedule.name,
                tick.isoformat(),
                result.id,
            )
        return len(results), due.next_tick
