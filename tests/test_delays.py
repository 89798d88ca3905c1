"""Delays: run_after as a datetime, a timedelta or a number of seconds."""

from datetime import timedelta

import pytest
from django.utils import timezone

from django_tasks_q.compat import InvalidTask, TaskResultStatus, task_backends

from . import tasks
from .conftest import wait_until
from .models import Execution


@pytest.mark.parametrize("delay", [30, 2.5, timedelta(seconds=30)])
def test_run_after_in_seconds_or_as_a_timedelta(queue_db, delay):
    tasks.echo.using(backend=queue_db.alias, run_after=delay).enqueue()
    [row] = queue_db.queued()
    seconds = delay.total_seconds() if isinstance(delay, timedelta) else delay
    assert row["run_after"] - row["enqueued_at"] == timedelta(seconds=seconds)


def test_a_delayed_task_waits_for_its_time(queue_db, run_worker):
    at = timezone.now() + timedelta(hours=1)
    result = tasks.record.using(backend=queue_db.alias, run_after=at).enqueue(
        queue_db.database, "later"
    )
    run_worker(queue_db)  # a burst worker: runs what is due, then exits
    assert not Execution.objects.using(queue_db.database).exists()
    assert [(row["id"], row["run_after"]) for row in queue_db.queued()] == [(result.id, at)]
    assert task_backends[queue_db.alias].get_result(result.id).status == TaskResultStatus.READY


def test_a_delayed_task_runs_once_due(queue_db, start_worker):
    result = tasks.record.using(backend=queue_db.alias, run_after=1).enqueue(
        queue_db.database, "due"
    )
    [row] = queue_db.queued()
    worker = start_worker(queue_db)
    wait_until(lambda: queue_db.finished_count() == 1, message="the task to run")
    worker.signal()
    assert worker.wait() == 0
    done = task_backends[queue_db.alias].get_result(result.id)
    assert done.status == TaskResultStatus.SUCCESSFUL
    assert done.started_at >= row["run_after"]


@pytest.mark.parametrize(
    ("run_after", "message"),
    [
        (-1, "must not be a negative delay"),
        (timedelta(seconds=-1), "must not be a negative delay"),
        ("soon", "a datetime, a timedelta or a number of seconds"),
        (True, "a datetime, a timedelta or a number of seconds"),
        (1e12, "too long a delay: it would end outside the years 1 to 9999"),
        (timedelta(days=999_999_999), "too long a delay"),
        (1e300, "too long a delay"),
    ],
)
def test_bad_delays_are_refused(run_after, message):
    with pytest.raises(InvalidTask, match=message):
        tasks.echo.using(run_after=run_after)


@pytest.mark.parametrize("delay", [30, timedelta(minutes=5)])
def test_a_results_task_holds_the_absolute_run_after(queue_db, delay):
    backend = task_backends[queue_db.alias]
    result = tasks.echo.using(backend=queue_db.alias, run_after=delay).enqueue()
    [row] = queue_db.queued()
    assert result.task.run_after == row["run_after"]  # a datetime, not the delay
    assert backend.get_result(result.id).task.run_after == row["run_after"]


def test_a_results_task_holds_the_datetime_it_was_deferred_to(queue_db):
    at = timezone.now() + timedelta(hours=1)
    result = tasks.echo.using(backend=queue_db.alias, run_after=at).enqueue()
    assert task_backends[queue_db.alias].get_result(result.id).task.run_after == at


def test_a_task_not_deferred_has_no_run_after(queue_db):
    result = tasks.echo.using(backend=queue_db.alias).enqueue()
    assert result.task.run_after is None
    assert task_backends[queue_db.alias].get_result(result.id).task.run_after is None
