"""Periodic tasks: the ticks of cron expressions (in a timezone, across DST)
and intervals, missed ticks, declarations; each tick enqueued exactly once by
real workers; pause and resume; the admin and ``taskq schedules``."""

import json
import logging
from datetime import UTC, date, datetime, timedelta
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from django_tasks_q import InvalidSchedule, QTask, periodic, schedules, task
from django_tasks_q.backends.database import operations
from django_tasks_q.compat import task as django_task
from django_tasks_q.models import Schedule, Task, TaskResult
from django_tasks_q.schedules import GRACE, Due, PeriodicSchedule
from django_tasks_q.worker.scheduler import Scheduler

from .conftest import wait_until
from .factories import make_result, make_task
from .models import Execution
from .tasks import echo, record
from .test_admin import admin_queue, user  # noqa: F401 - fixtures, used by name

PARIS = ZoneInfo("Europe/Paris")
NOON = datetime(2026, 1, 1, 12, tzinfo=UTC)
SECOND = timedelta(seconds=1)
MINUTE = timedelta(minutes=1)


def at(*fields, tz=UTC):
    return datetime(*fields, tzinfo=tz)


def every(interval, **options):
    return PeriodicSchedule(name="s", task=echo, every=interval, **options)


def cron(expression, **options):
    return PeriodicSchedule(name="s", task=echo, cron=expression, **options)


def ticks(schedule, after, count):
    found = []
    for _ in range(count):
        after = schedule.next_tick(after)
        found.append(after)
    return found


# -- when ticks fall ------------------------------------------------------------------


def test_interval_ticks_fall_on_multiples_of_it_since_the_epoch():
    five_minutes = every(timedelta(minutes=5))
    assert five_minutes.next_tick(at(2026, 1, 1, 12, 3, 10)) == at(2026, 1, 1, 12, 5)
    assert five_minutes.next_tick(at(2026, 1, 1, 12, 5)) == at(2026, 1, 1, 12, 10)  # after
    # Seconds or a timedelta; a moment given in any timezone: the same ticks.
    assert every(300).next_tick(at(2026, 1, 1, 13, 3, 10, tz=PARIS)) == at(2026, 1, 1, 12, 5)
    assert ticks(every(1.5), at(2026, 1, 1), 2) == [
        at(2026, 1, 1, 0, 0, 1, 500000),
        at(2026, 1, 1, 0, 0, 3),
    ]
    assert [every(n).description for n in (1, 90, 300, 3600, 7200, 86400, 1.5)] == [
        "every second",
        "every 90 seconds",
        "every 5 minutes",
        "every hour",
        "every 2 hours",
        "every day",
        "every 1.5 seconds",
    ]


def test_cron_is_read_in_its_timezone_across_dst():
    nightly = cron("0 3 * * *", timezone="Europe/Paris")
    # 03:00 in Paris is 02:00 UTC in winter, 01:00 UTC in summer; in 2026 the
    # clocks go forward on 29 March and back on 25 October.
    assert ticks(nightly, at(2026, 3, 27, 12), 3) == [
        at(2026, 3, 28, 2),
        at(2026, 3, 29, 1),
        at(2026, 3, 30, 1),
    ]
    assert ticks(nightly, at(2026, 10, 23, 12), 3) == [
        at(2026, 10, 24, 1),
        at(2026, 10, 25, 2),
        at(2026, 10, 26, 2),
    ]
    assert nightly.description == "0 3 * * * (Europe/Paris)"


def test_a_skipped_or_repeated_wall_time_ticks_once():
    half_past_two = cron("30 2 * * *", timezone="Europe/Paris")
    # 29 March has no 02:30 (02:00 jumps to 03:00): the tick comes at 03:00.
    assert ticks(half_past_two, at(2026, 3, 28, 12), 2) == [
        at(2026, 3, 29, 1),
        at(2026, 3, 30, 0, 30),
    ]
    # 25 October has two (03:00 goes back to 02:00): the first one ticks.
    assert ticks(half_past_two, at(2026, 10, 24, 12), 2) == [
        at(2026, 10, 25, 0, 30),
        at(2026, 10, 26, 1, 30),
    ]
    # An hourly schedule ticks every real hour, the repeated one too.
    hourly = cron("@hourly", timezone="Europe/Paris")
    that_day = [
        tick
        for tick in ticks(hourly, at(2026, 10, 24, 21, 30), 26)
        if tick.astimezone(PARIS).date() == date(2026, 10, 25)
    ]
    assert len(that_day) == 25


def test_cron_defaults_to_the_projects_time_zone(settings):
    settings.TIME_ZONE = "America/New_York"
    nine = cron("0 9 * * *")
    assert nine.next_tick(at(2026, 1, 1)) == at(2026, 1, 1, 14)
    assert nine.description == "0 9 * * * (America/New_York)"


def test_due_ticks_when_workers_are_on_time_or_a_little_late():
    ten_seconds = every(10)
    # A new (or resumed, or changed) schedule starts after now.
    assert ten_seconds.due(None, NOON + SECOND) == Due([], NOON + 10 * SECOND, None)
    assert ten_seconds.due(NOON, NOON) == Due([NOON], NOON + 10 * SECOND, None)
    # Workers that were busy for a while enqueue each tick since: no gap.
    late = ten_seconds.due(NOON, NOON + 35 * SECOND)
    assert late == Due([NOON + n * 10 * SECOND for n in range(4)], NOON + 40 * SECOND, None)
    assert len(ten_seconds.due(NOON, NOON + GRACE).ticks) == 7


@pytest.mark.parametrize("missed, enqueued", [("skip", []), ("run_once", [NOON])])
def test_missed_ticks_are_skipped_or_run_once_never_caught_up(missed, enqueued):
    # No worker ran for two hours: 7,200 ticks of a one-second schedule missed.
    back = NOON + timedelta(hours=2, milliseconds=300)
    after_now = NOON + timedelta(hours=2, seconds=1)
    assert every(1, missed=missed).due(NOON, back) == Due(enqueued, after_now, NOON)
    # Missed means older than GRACE: then every tick since counts as missed.
    assert every(1, missed=missed).due(NOON, NOON + GRACE + SECOND).ticks == enqueued
    # Workers down over 03:00 until 10:00: tomorrow's 03:00 is next.
    nightly = cron("0 3 * * *", missed=missed)
    assert nightly.due(at(2026, 1, 2, 3), at(2026, 1, 2, 10)) == Due(
        [at(2026, 1, 2, 3)] if enqueued else [], at(2026, 1, 3, 3), at(2026, 1, 2, 3)
    )


# -- declaring ------------------------------------------------------------------------


@pytest.fixture
def registry(monkeypatch):
    """An empty registry of declared schedules, the real one restored after."""
    monkeypatch.setattr(schedules, "_declared", {})


def sync(full): ...


def report(): ...


def test_periodic_registers_schedules_and_returns_the_task(registry):
    # Declared here, not where the functions are, so the registry is the test's.
    synced = periodic("*/15 * * * *", kwargs={"full": False})(
        periodic(every=3600, name="hourly-full", kwargs={"full": True}, missed="run_once")(
            task(queue_name="emails")(sync)
        )
    )
    reported = periodic("0 3 * * *", timezone="Europe/Paris")(django_task(report))

    assert isinstance(synced, QTask) and synced.queue_name == "emails" and synced.func is sync
    declared = {s.name: s for s in schedules.declared_schedules()}
    assert set(declared) == {
        "tests.test_schedules.sync",
        "hourly-full",
        "tests.test_schedules.report",
    }
    assert declared["tests.test_schedules.sync"].description == "*/15 * * * * (UTC)"
    assert declared["tests.test_schedules.sync"].kwargs == {"full": False}
    assert (declared["hourly-full"].missed, declared["hourly-full"].kwargs) == (
        "run_once",
        {"full": True},
    )
    assert declared["tests.test_schedules.report"].task is reported


def test_two_schedules_with_one_name_are_refused(registry):
    periodic(every=60)(echo)
    periodic(every=60)(echo)  # the same declaration again (a module imported twice)
    with pytest.raises(InvalidSchedule, match="give each schedule of a task its own name"):
        periodic("0 * * * *")(echo)
    with pytest.raises(InvalidSchedule, match="its own name"):
        periodic(every=60, kwargs={"x": 1})(echo)
    assert len(schedules.declared_schedules()) == 1


@pytest.mark.parametrize(
    "options, message",
    [
        ({}, "either cron or every"),
        ({"cron": "* * * * *", "every": 60}, "either cron or every"),
        ({"cron": "61 * * * *"}, "bad cron '61 \\* \\* \\* \\*'"),
        ({"cron": "0 0 31 2 *"}, "bad cron"),
        ({"cron": "*/10 * * * * *"}, "five fields"),
        ({"cron": "0 3 * * *", "timezone": "Mars/Olympus_Mons"}, "unknown timezone"),
        ({"every": 0.5}, "at least 1 second"),
        ({"every": "60"}, "a timedelta or seconds"),
        ({"every": 60, "timezone": "Europe/Paris"}, "timezone goes with cron"),
        ({"every": 60, "missed": "catch_up"}, "missed must be 'skip' or 'run_once'"),
        ({"every": 60, "args": (NOON,)}, "plain JSON"),
        ({"every": 60, "kwargs": {1: "one"}}, "plain JSON"),
        ({"every": 60, "args": ("a\x00b",)}, "plain JSON .*contains a NUL character"),
        ({"every": 60, "name": "x" * 201}, "1-200 characters"),
    ],
)
def test_a_bad_declaration_fails_where_it_is_made(registry, options, message):
    with pytest.raises(InvalidSchedule, match=message):
        periodic(**options)(echo)
    assert schedules.declared_schedules() == []


def test_periodic_goes_above_task(registry):
    with pytest.raises(InvalidSchedule, match="put @periodic above @task"):
        task(periodic(every=60)(sync))


def test_the_redis_backend_refuses_periodic_tasks(registry, settings):
    redis_backend = {"BACKEND": "django_tasks_q.backends.redis.RedisBackend"}
    settings.TASKS = {**settings.TASKS, "in-redis": redis_backend}
    with pytest.raises(InvalidSchedule, match="RedisBackend does not support periodic tasks"):
        periodic(every=60)(echo.using(backend="in-redis"))
    assert schedules.declared_schedules() == []


# -- the workers' part, with an explicit clock ----------------------------------------

# About the Schedule table: the database backends only.
database_only = pytest.mark.database_only


def minutely(backend, **options):
    if "cron" not in options:
        options.setdefault("every", 60)
    return PeriodicSchedule(
        name="minutely", task=echo.using(backend=backend.alias), args=("hi",), **options
    )


def rows(backend):
    return Schedule.objects.using(backend.database)


def queued(backend):
    return Task.objects.using(backend.database).order_by("run_after")


@database_only
def test_each_tick_is_enqueued_by_whichever_worker_comes_first(queue_db):
    schedule = minutely(queue_db)
    one = Scheduler(queue_db.queue_backend, [schedule])
    two = Scheduler(queue_db.queue_backend, [schedule])

    # A new schedule gets its row, and starts at the next tick after now.
    assert one.run_due(NOON + SECOND) == 0
    row = rows(queue_db).get()
    assert (row.task_path, row.description, row.paused) == (
        "tests.tasks.echo",
        "every minute",
        False,
    )
    assert row.next_tick_at == NOON + MINUTE == one.next_due
    assert two.run_due(NOON + 2 * SECOND) == 0

    # Both workers saw the tick due: the compare-and-set lets one of them enqueue it.
    tick = NOON + MINUTE
    assert one._advance(schedule, tick, tick + SECOND) == (1, tick + MINUTE)
    assert two._advance(schedule, tick, tick + SECOND) == (0, tick + MINUTE)
    assert two.run_due(tick + SECOND) == 0 and two.next_due == tick + MINUTE
    task = queued(queue_db).get()
    assert (task.task_path, task.args, task.run_after) == ("tests.tasks.echo", ["hi"], tick)
    row.refresh_from_db()
    assert (row.next_tick_at, row.last_tick_at, row.last_task_id) == (tick + MINUTE, tick, task.id)

    assert two.run_due(tick + MINUTE) == 1
    assert [t.run_after for t in queued(queue_db)] == [tick, tick + MINUTE]


@database_only
def test_a_paused_schedule_enqueues_nothing_and_resumes_at_its_next_tick(queue_db):
    schedule = minutely(queue_db)
    scheduler = Scheduler(queue_db.queue_backend, [schedule])
    scheduler.run_due(NOON)
    assert operations.pause_schedules(rows(queue_db)) == 1
    assert operations.pause_schedules(rows(queue_db)) == 0

    assert scheduler.run_due(NOON + 10 * MINUTE) == 0
    Scheduler(queue_db.queue_backend, [schedule]).sync()  # a worker starting
    assert rows(queue_db).get().paused and not queued(queue_db).exists()

    assert operations.resume_schedules(rows(queue_db)) == 1
    # The ticks that came while it was paused are not run, even with run_once.
    scheduler = Scheduler(queue_db.queue_backend, [minutely(queue_db, missed="run_once")])
    assert scheduler.run_due(NOON + 10 * MINUTE + SECOND) == 0
    assert rows(queue_db).get().next_tick_at == NOON + 11 * MINUTE
    assert scheduler.run_due(NOON + 11 * MINUTE) == 1


@database_only
def test_a_changed_rule_starts_from_its_next_tick_and_keeps_paused(queue_db):
    Scheduler(queue_db.queue_backend, [minutely(queue_db)]).run_due(NOON)
    # New arguments: the same ticks go on.
    Scheduler(queue_db.queue_backend, [minutely(queue_db, missed="run_once")]).sync()
    assert rows(queue_db).get().next_tick_at == NOON + MINUTE
    operations.pause_schedules(rows(queue_db))

    hourly = Scheduler(queue_db.queue_backend, [minutely(queue_db, cron="0 * * * *")])
    hourly.sync()
    row = rows(queue_db).get()
    assert (row.description, row.next_tick_at, row.paused) == ("0 * * * * (UTC)", None, True)
    operations.resume_schedules(rows(queue_db))
    assert hourly.run_due(NOON + SECOND) == 0
    assert rows(queue_db).get().next_tick_at == NOON + timedelta(hours=1)


@database_only
@pytest.mark.parametrize("missed, enqueued", [("skip", 0), ("run_once", 1)])
def test_ticks_missed_while_no_worker_ran(queue_db, caplog, missed, enqueued):
    scheduler = Scheduler(queue_db.queue_backend, [minutely(queue_db, missed=missed)])
    scheduler.run_due(NOON)
    back = NOON + timedelta(days=1, seconds=30)

    with caplog.at_level(logging.WARNING, "django_tasks_q"):
        assert scheduler.run_due(back) == enqueued

    assert [t.run_after for t in queued(queue_db)] == [NOON + MINUTE][:enqueued]
    assert rows(queue_db).get().next_tick_at == NOON + timedelta(days=1, minutes=1)
    outcome = "ran once" if enqueued else "skipped"
    assert "Schedule minutely missed its ticks from 2026-01-01T12:01:00+00:00" in caplog.text
    assert f"(no worker ran): {outcome}" in caplog.text


# -- real workers ---------------------------------------------------------------------


def schedule_env(backend):
    """Declares the "every-second" schedule of tests.tasks.record in worker processes."""
    return {"TASKQ_TEST_SCHEDULE": f"{backend.alias}:{backend.database}"}


def enqueued_ticks(backend):
    """The run_after (the tick) of every task the schedule enqueued, run or not."""
    tick = [backend.database, "tick"]
    return sorted(
        run_after
        for model in (Task, TaskResult)
        for run_after, args in model.objects.using(backend.database)
        .filter(task_path="tests.tasks.record")
        .values_list("run_after", "args")
        if args == tick
    )


@database_only
def test_three_workers_enqueue_each_tick_exactly_once(queue_db, start_worker):
    workers = [
        start_worker(queue_db, "--concurrency", "2", env=schedule_env(queue_db)) for _ in range(3)
    ]
    # Each must be up (signal handlers installed, ticking) before any is
    # stopped: on a loaded machine one can still be importing Django.
    wait_until(
        lambda: all("ticks 1 schedule(s)" in worker.output() for worker in workers),
        timeout=120,
        message="all three workers to start ticking",
    )
    runs = Execution.objects.using(queue_db.database).filter(label="tick")
    wait_until(lambda: runs.count() >= 6, timeout=120, message="six ticks to run")
    for worker in workers:
        worker.signal()
    for worker in workers:
        assert worker.wait() == 0, worker.output()

    ticks = enqueued_ticks(queue_db)
    # Every second from the first tick to the last, each exactly once.
    assert len(ticks) >= 6
    assert ticks == [ticks[0] + n * SECOND for n in range(len(ticks))]
    assert ticks[0].microsecond == 0
    assert rows(queue_db).get(name="every-second").last_tick_at == ticks[-1]
    ran = list(runs.values_list("task_id", flat=True))
    assert len(ran) == len(set(ran))
    # All three were ticking it.
    assert all("ticks 1 schedule(s)" in worker.output() for worker in workers)


@database_only
@pytest.mark.parametrize("flags", [["--no-schedules", "--max-tasks", "1"], ["--burst"]])
def test_workers_told_not_to_or_in_burst_mode_leave_schedules_alone(queue_db, start_worker, flags):
    record.using(backend=queue_db.alias).enqueue(queue_db.database, "plain")
    worker = start_worker(queue_db, *flags, env=schedule_env(queue_db))
    assert worker.wait() == 0, worker.output()
    # It ran the task, and had it ticked schedules it would have done so first.
    assert Execution.objects.using(queue_db.database).filter(label="plain").exists()
    assert not rows(queue_db).exists()


# -- the admin ------------------------------------------------------------------------

SCHEDULES_URL = reverse("admin:django_tasks_q_schedule_changelist")


def make_schedules(backend):
    finished = make_result(backend)
    waiting = make_task(backend)
    rows(backend).create(
        name="nightly",
        task_path="tests.tasks.add",
        description="0 3 * * * (Europe/Paris)",
        next_tick_at=NOON,
        last_tick_at=NOON - timedelta(days=1),
        last_task_id=finished.pk,
    )
    rows(backend).create(
        name="often",
        task_path="tests.tasks.echo",
        description="every 5 minutes",
        paused=True,
        last_task_id=waiting.pk,
    )
    return finished, waiting


@database_only
def test_schedule_admin_lists_schedules_and_links_their_last_task(admin_queue, superuser):  # noqa: F811
    finished, waiting = make_schedules(admin_queue)

    response = superuser.get(SCHEDULES_URL)
    page = response.content.decode()

    for text in ("nightly", "tests.tasks.add", "0 3 * * * (Europe/Paris)", "every 5 minutes"):
        assert text in page
    assert "2026-01-01 12:00:00" in page and "2025-12-31 12:00:00" in page
    assert reverse("admin:django_tasks_q_taskresult_change", args=[finished.pk]) in page
    assert reverse("admin:django_tasks_q_task_change", args=[waiting.pk]) in page
    # Nothing to add or edit: declared in code.
    assert not response.context["has_add_permission"]
    detail = superuser.get(reverse("admin:django_tasks_q_schedule_change", args=["nightly"]))
    assert detail.status_code == 200 and 'name="_save"' not in detail.content.decode()


@database_only
def test_schedule_admin_pauses_and_resumes(admin_queue, superuser):  # noqa: F811
    make_schedules(admin_queue)

    def act(action, *names):
        data = {"action": action, "_selected_action": list(names)}
        return superuser.post(SCHEDULES_URL, data, follow=True)

    response = act("pause_schedules", "nightly", "often")
    assert "Paused 1 schedule: it enqueues nothing until resumed." in response.content.decode()
    assert set(rows(admin_queue).values_list("paused", flat=True)) == {True}

    response = act("resume_schedules", "nightly")
    assert "Resumed 1 schedule" in response.content.decode()
    nightly = rows(admin_queue).get(name="nightly")
    assert (nightly.paused, nightly.next_tick_at) == (False, None)  # a worker sets it


@database_only
def test_pausing_needs_the_change_permission(admin_queue):  # noqa: F811
    make_schedules(admin_queue)
    viewer = user("viewer", "view_schedule")

    page = viewer.get(SCHEDULES_URL)
    assert page.status_code == 200 and "pause_schedules" not in page.content.decode()
    viewer.post(SCHEDULES_URL, {"action": "pause_schedules", "_selected_action": ["nightly"]})
    assert not rows(admin_queue).get(name="nightly").paused

    operator = user("operator", "view_schedule", "change_schedule")
    operator.post(SCHEDULES_URL, {"action": "pause_schedules", "_selected_action": ["nightly"]})
    assert rows(admin_queue).get(name="nightly").paused


# -- taskq schedules ------------------------------------------------------------------


def taskq(backend, *args, as_json=False):
    out = StringIO()
    flags = ["--backend", backend.alias, *(["--json"] if as_json else [])]
    call_command("taskq", *flags, "schedules", *args, stdout=out)
    return json.loads(out.getvalue()) if as_json else out.getvalue()


@database_only
def test_taskq_lists_pauses_and_resumes_schedules(queue_db):
    finished, _ = make_schedules(queue_db)

    lines = taskq(queue_db).splitlines()
    assert lines[0].split() == [
        "NAME", "TASK", "SCHEDULE", "PAUSED", "NEXT", "TICK", "LAST", "TICK", "LAST", "TASK"
    ]  # fmt: skip
    assert lines[2].startswith("nightly") and "2026-01-01T12:00:00+00:00" in lines[2]
    assert lines[3].startswith("often") and " yes " in lines[3]
    listed = taskq(queue_db, as_json=True)
    assert listed[0] == {
        "name": "nightly",
        "task_path": "tests.tasks.add",
        "description": "0 3 * * * (Europe/Paris)",
        "paused": False,
        "next_tick_at": "2026-01-01T12:00:00+00:00",
        "last_tick_at": "2025-12-31T12:00:00+00:00",
        "last_task_id": str(finished.pk),
    }
    assert listed[1]["paused"] and listed[1]["next_tick_at"] is None

    assert taskq(queue_db, "pause", "nightly") == "Paused 1 schedule(s).\n"
    assert taskq(queue_db, "resume", "--all", as_json=True) == {"resumed": 2}
    assert not rows(queue_db).filter(paused=True).exists()
    with pytest.raises(CommandError, match="No schedule named nope"):
        taskq(queue_db, "pause", "nightly", "nope")
    with pytest.raises(CommandError, match="give names, or --all"):
        taskq(queue_db, "resume")
