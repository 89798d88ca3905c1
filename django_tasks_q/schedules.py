"""Periodic tasks: a task's schedule declared in code, as a cron expression or an interval.

::

    from django_tasks_q import periodic, task

    @periodic("0 3 * * *", timezone="Europe/Paris")
    @task
    def nightly_report(): ...

This module holds the declarations and the arithmetic of ticks, and touches no
database. Workers keep each schedule's state in the ``Schedule`` table and
enqueue every tick exactly once (``worker/scheduler.py``).
"""

import zoneinfo
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, NamedTuple

from django.utils import timezone as django_timezone

from .compat import Task
from .exceptions import InvalidSchedule
from .payloads import json_round_trip

SKIP = "skip"
RUN_ONCE = "run_once"
# A due tick this old means no worker ran then: the ticks since were missed,
# and the schedule's ``missed`` policy decides. Younger, the workers were only
# late (busy, or the database away for a moment): each tick is enqueued.
GRACE = timedelta(seconds=60)
# Workers look for due ticks about once a second: shorter intervals can't be kept.
MIN_INTERVAL = timedelta(seconds=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


class Due(NamedTuple):
    """What a schedule enqueues at a moment, and where it goes on from."""

    ticks: list[datetime]  # to enqueue now, oldest first
    next_tick: datetime  # the schedule's next tick after them
    missed_from: datetime | None  # the first missed tick, if any were missed


@dataclass(frozen=True, slots=True)
class CronRule:
    """A cron expression, read in a timezone."""

    expression: str
    timezone: tzinfo
    # A fixed hour ("30 2 * * *") ticks once when the clocks go back and the
    # hour repeats, as cron does; "*" hours tick by real time.
    once_in_repeated_hour: bool

    def next_tick(self, after: datetime) -> datetime:
        """The first tick strictly after ``after`` (aware), in UTC."""
        from croniter import croniter  # only cron schedules need it (and its dateutil)

        ticks = croniter(self.expression, after.astimezone(self.timezone))
        while True:
            tick = ticks.get_next(datetime)
            if not (self.once_in_repeated_hour and _second_occurrence(tick)):
                return tick.astimezone(UTC)


class PeriodicSchedule:
    """One declared schedule: which task, when, with what arguments.

    Give either ``cron`` (five fields, or ``@daily`` and the like; read in
    ``timezone``, default ``settings.TIME_ZONE``) or ``every`` (a timedelta or
    seconds; ticks fall on whole multiples of it since the Unix epoch, so every
    worker agrees on them). ``missed`` says what happens to ticks missed while
    no worker ran: ``"skip"`` them, or ``"run_once"`` for all of them.
    """

    def __init__(
        self,
        *,
        name: str,
        task: Task,
        cron: str | None = None,
        every: timedelta | float | None = None,
        timezone: str | tzinfo | None = None,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        missed: str = SKIP,
    ) -> None:
        if not isinstance(task, Task):
            raise InvalidSchedule(
                f"@periodic needs a task, got {task!r}: put @periodic above @task."
            )
        if not name or not isinstance(name, str) or len(name) > 200:
            raise InvalidSchedule(f"A schedule's name must be 1-200 characters: {name!r}")
        if (cron is None) == (every is None):
            raise InvalidSchedule(f"Schedule {name!r}: give either cron or every (not both).")
        if missed not in (SKIP, RUN_ONCE):
            raise InvalidSchedule(
                f"Schedule {name!r}: missed must be {SKIP!r} or {RUN_ONCE!r}, not {missed!r}."
            )
        self.name = name
        self.task = task
        self.missed = missed
        self.args, self.kwargs = self._json_arguments(args, kwargs or {})
        # When it ticks: a cron rule, or an interval.
        self.rule: CronRule | timedelta
        if cron is not None:
            self.rule = self._cron_rule(cron, self._timezone(timezone))
        else:
            if timezone is not None:
                raise InvalidSchedule(
                    f"Schedule {name!r}: an interval is the same in every timezone; "
                    "timezone goes with cron."
                )
            if isinstance(every, bool) or not isinstance(every, timedelta | int | float):
                raise InvalidSchedule(f"Schedule {name!r}: every is a timedelta or seconds.")
            self.rule = every if isinstance(every, timedelta) else timedelta(seconds=every)
            if self.rule < MIN_INTERVAL:
                raise InvalidSchedule(f"Schedule {name!r}: every must be at least 1 second.")
        if len(self.description) > 255:  # the Schedule table's column
            raise InvalidSchedule(f"Schedule {name!r}: the cron expression is too long.")

    def _json_arguments(
        self, args: Iterable[Any], kwargs: Mapping[str, Any]
    ) -> tuple[list[Any], dict[str, Any]]:
        positional, named = list(args), dict(kwargs)
        arguments = [positional, named]
        try:  # JSON as enqueue() takes it, and already plain: as it will be stored
            if json_round_trip(arguments) == arguments:
                return positional, named
            problem = "it changes in a JSON round trip"
        except TypeError as error:
            problem = str(error)
        raise InvalidSchedule(
            f"Schedule {self.name!r}: args and kwargs must be plain JSON "
            f"(str, int, float, bool, None, list, dict with string keys): {problem}."
        )

    def _timezone(self, name: str | tzinfo | None) -> tzinfo:
        if name is None:
            return django_timezone.get_default_timezone()
        if isinstance(name, tzinfo):
            return name
        try:
            return zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise InvalidSchedule(f"Schedule {self.name!r}: unknown timezone {name!r}.") from None

    def _cron_rule(self, cron: str, zone: tzinfo) -> CronRule:
        fields = cron.split() if isinstance(cron, str) else []
        if not (len(fields) == 5 or (len(fields) == 1 and fields[0].startswith("@"))):
            raise InvalidSchedule(
                f"Schedule {self.name!r}: cron takes five fields (minute hour day month "
                f"weekday) or an alias like @daily, not {cron!r}. For periods "
                "under a minute, use every=."
            )
        from croniter import CroniterError, croniter

        try:
            hours = croniter(cron).expressions[1]
            rule = CronRule(cron, zone, once_in_repeated_hour=not hours.startswith("*"))
            rule.next_tick(django_timezone.now())  # "0 0 31 2 *" never comes
        except CroniterError as error:
            message = f"Schedule {self.name!r}: bad cron {cron!r}: {error}"
            raise InvalidSchedule(message) from None
        return rule

    @property
    def description(self) -> str:
        """The rule the ticks follow, as the ``Schedule`` table and admin show it."""
        if isinstance(self.rule, CronRule):
            return f"{self.rule.expression} ({self.rule.timezone})"
        seconds = int(self.rule.total_seconds())
        if self.rule != timedelta(seconds=seconds):
            return f"every {self.rule.total_seconds():g} seconds"
        for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
            if seconds % size == 0:
                count = seconds // size
                return f"every {unit}" if count == 1 else f"every {count} {unit}s"
        return "every second" if seconds == 1 else f"every {seconds} seconds"

    def next_tick(self, after: datetime) -> datetime:
        """The first tick strictly after ``after`` (aware), in UTC."""
        if isinstance(self.rule, CronRule):
            return self.rule.next_tick(after)
        step = self.rule // MICROSECOND
        return EPOCH + ((after - EPOCH) // MICROSECOND // step + 1) * step * MICROSECOND

    def due(self, next_tick_at: datetime | None, now: datetime) -> Due:
        """What to enqueue at ``now`` when the schedule's next tick is ``next_tick_at``.

        None (a new, resumed or changed schedule) starts at the next tick after
        ``now``. If ``next_tick_at`` is at most ``GRACE`` old, the workers were
        only late: every tick up to ``now`` is enqueued. If it is older, no
        worker ran then, and every tick up to ``now`` was missed: ``skip``
        enqueues none of them, ``run_once`` one run, at the first missed tick.
        Either way the schedule goes on from the next tick after ``now``.
        """
        if next_tick_at is None:
            return Due([], self.next_tick(now), None)
        if next_tick_at < now - GRACE:
            missed = [next_tick_at] if self.missed == RUN_ONCE else []
            return Due(missed, self.next_tick(now), next_tick_at)
        ticks, tick = [], next_tick_at
        while tick <= now:
            ticks.append(tick)
            tick = self.next_tick(tick)
        return Due(ticks, tick, None)

    def _identity(self) -> tuple[Any, ...]:
        return (
            self.task.module_path,
            self.task.backend,
            self.description,
            self.args,
            self.kwargs,
            self.missed,
        )

    def __repr__(self) -> str:
        return f"<PeriodicSchedule {self.name!r}: {self.task.module_path} {self.description}>"


def _second_occurrence(tick: datetime) -> bool:
    """Whether ``tick`` is the wall-clock time's second coming (clocks went back)."""
    return tick.fold == 1 and tick.utcoffset() != tick.replace(fold=0).utcoffset()


_declared: dict[str, PeriodicSchedule] = {}


def periodic[T: Task](
    cron: str | None = None,
    *,
    every: timedelta | float | None = None,
    timezone: str | tzinfo | None = None,
    args: Iterable[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    name: str | None = None,
    missed: str = SKIP,
) -> Callable[[T], T]:
    """Run the task below on a schedule: a cron expression, or ``every`` N seconds:

        @periodic("*/15 * * * *", kwargs={"full": False})
        @periodic("0 3 * * *", timezone="Europe/Paris", name="full-sync", kwargs={"full": True})
        @task
        def sync_catalogue(full): ...

    Returns the task unchanged. ``name`` (default: the task's dotted path)
    identifies the schedule; give a task's second schedule its own. ``missed``:
    ``"skip"`` (default) or ``"run_once"``: what to do with ticks missed while no worker ran.
    """

    def register(task: T) -> T:
        schedule = PeriodicSchedule(
            name=name or str(getattr(task, "module_path", "")),  # not a task: it says so
            task=task,
            cron=cron,
            every=every,
            timezone=timezone,
            args=args,
            kwargs=kwargs,
            missed=missed,
        )
        backend = task.get_backend()
        # Only our database backends keep schedules. Django's own backends
        # (ImmediateBackend in a project's tests) have no worker to tick them.
        if not getattr(backend, "supports_periodic", True):
            raise InvalidSchedule(
                f"{type(backend).__name__} does not support periodic tasks (schedule "
                f"{schedule.name!r}): declare them on tasks of a database backend."
            )
        previous = _declared.get(schedule.name)
        if previous is not None and previous._identity() != schedule._identity():
            raise InvalidSchedule(
                f"Two schedules are named {schedule.name!r} ({previous.task.module_path} "
                f"{previous.description}, and {task.module_path} {schedule.description}): "
                "give each schedule of a task its own name=."
            )
        _declared[schedule.name] = schedule
        return task

    return register


def declared_schedules() -> list[PeriodicSchedule]:
    """Every schedule declared in this process (by the modules it imported)."""
    return list(_declared.values())
