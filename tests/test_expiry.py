"""Expiry: a task not started by its deadline is not run; it is recorded EXPIRED."""

from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from django_tasks_q import QTask
from django_tasks_q.backends.contract import Outcome
from django_tasks_q.compat import InvalidTask, TaskResultStatus, task_backends
from django_tasks_q.models import ResultStatus

from . import tasks
from .conftest import wait_until
from .factories import claim
from .models import Execution

TASK_EXPIRED = "django_tasks_q.exceptions.TaskExpired"


def executed(backend) -> list[str]:
    return list(Execution.objects.using(backend.database).values_list("label", flat=True))


def status_of(backend, task_id) -> str:
    """The store's own status: EXPIRED, not just Django's FAILED."""
    return {row["id"]: row["status"] for row in backend.finished()}.get(task_id, "queued")


def already_expired(backend, task, *args):
    """Enqueue ``task`` with a deadline that has passed (after a run_after
    further in the past, as the deadline must follow it)."""
    now = timezone.now()
    due = task.using(
        backend=backend.alias,
        run_after=now - timedelta(minutes=10),
        expires_at=now - timedelta(minutes=5),
    )
    return due.enqueue(*args)


def test_the_deadline_as_datetime_timedelta_or_seconds(queue_db):
    backend = task_backends[queue_db.alias]
    at = timezone.now() + timedelta(hours=1)
    absolute = tasks.echo.using(backend=queue_db.alias, expires_at=at).enqueue()
    relative = tasks.echo.using(backend=queue_db.alias, expires_at=timedelta(minutes=5)).enqueue()
    seconds = tasks.echo.using(backend=queue_db.alias, expires_at=90).enqueue()

    assert absolute.expires_at == backend.get_result(absolute.id).expires_at == at
    assert relative.expires_at - relative.enqueued_at == timedelta(minutes=5)
    assert backend.get_result(relative.id).expires_at == relative.expires_at
    assert seconds.expires_at - seconds.enqueued_at == timedelta(seconds=90)
    assert tasks.echo.using(backend=queue_db.alias).enqueue().expires_at is None


def test_the_task_option_counts_from_run_after(queue_db):
    delayed = tasks.record_soon.using(backend=queue_db.alias, run_after=timedelta(hours=2))
    result = delayed.enqueue(queue_db.database, "later")
    [row] = queue_db.queued()
    assert result.expires_at == row["run_after"] + timedelta(hours=1)
    # A call's own deadline wins.
    at = timezone.now() + timedelta(minutes=1)
    own = tasks.record_soon.using(backend=queue_db.alias, expires_at=at)
    assert own.enqueue(queue_db.database, "mine").expires_at == at


def test_an_expired_task_is_never_run_and_is_recorded_expired(queue_db, run_worker):
    expired = already_expired(queue_db, tasks.record, queue_db.database, "too late")
    in_time = tasks.record.using(backend=queue_db.alias, expires_at=3600)
    kept = in_time.enqueue(queue_db.database, "in time")

    worker = run_worker(queue_db)

    assert executed(queue_db) == ["in time"]
    assert status_of(queue_db, expired.id) == ResultStatus.EXPIRED
    assert status_of(queue_db, kept.id) == ResultStatus.SUCCESSFUL
    result = task_backends[queue_db.alias].get_result(expired.id)
    assert result.status == TaskResultStatus.FAILED  # Django's word for it
    assert result.started_at is None and result.worker_ids == []
    [error] = result.errors
    assert error.exception_class_path == TASK_EXPIRED
    assert "not started by its deadline" in error.traceback
    assert "1 task(s) not started by their deadline" in worker.output()
    assert queue_db.queued_count() == 0


def test_the_claim_passes_over_expired_tasks_before_the_sweep(queue_db):
    backend = task_backends[queue_db.alias]
    expired = already_expired(queue_db, tasks.echo, "late")
    waiting = tasks.echo.using(backend=queue_db.alias).enqueue("on time")

    assert [task.id for task in claim(queue_db)] == [waiting.id]
    assert backend.expire_tasks() == 1
    assert status_of(queue_db, expired.id) == ResultStatus.EXPIRED
    assert backend.expire_tasks() == 0
    assert [row["id"] for row in queue_db.queued()] == [waiting.id]  # still RUNNING


def test_a_retry_due_after_the_deadline_is_not_started(queue_db):
    """The deadline is for starting an attempt: a retry that would start after
    it is not run, and the result keeps the earlier attempt's error."""
    backend = task_backends[queue_db.alias]
    result = tasks.echo.using(backend=queue_db.alias, expires_at=3600).enqueue()
    [claimed] = claim(queue_db, "w-1")
    now = timezone.now()
    failed = Outcome(
        claimed,
        Outcome.RETRY,
        finished_at=now,
        duration=0.01,
        error={"exception_class_path": "builtins.ValueError", "traceback": "ValueError\n"},
        retry_at=now,
    )
    assert backend.record_and_claim([failed], None, 0, "w-1")[0] == [failed]

    queue_db.set_deadline(result.id, timezone.now() - timedelta(seconds=1))
    assert claim(queue_db, "w-2") == []
    assert backend.expire_tasks() == 1
    fresh = backend.get_result(result.id)
    assert [e.exception_class_path for e in fresh.errors] == ["builtins.ValueError", TASK_EXPIRED]
    assert fresh.attempts == 1 and status_of(queue_db, result.id) == ResultStatus.EXPIRED


def test_a_task_started_in_time_runs_to_the_end(queue_db, start_worker, tmp_path):
    release = tmp_path / "release"
    held = tasks.wait_for_file.using(backend=queue_db.alias, expires_at=3600)
    result = held.enqueue(queue_db.database, str(release))
    worker = start_worker(queue_db)
    wait_until(lambda: "started" in executed(queue_db), message="the task to start")

    # Its deadline passes while it runs: the sweep leaves it alone.
    queue_db.set_deadline(result.id, timezone.now() - timedelta(seconds=1))
    assert task_backends[queue_db.alias].expire_tasks() == 0

    release.touch()
    wait_until(lambda: queue_db.finished_count() == 1, message="the task to finish")
    worker.signal()
    assert worker.wait() == 0
    assert status_of(queue_db, result.id) == ResultStatus.SUCCESSFUL


def test_a_cancelled_task_does_not_expire_later(queue_db):
    result = tasks.echo.using(backend=queue_db.alias, expires_at=3600).enqueue()
    assert result.cancel()
    queue_db.set_deadline(result.id, timezone.now() - timedelta(seconds=1))
    assert task_backends[queue_db.alias].expire_tasks() == 0
    assert status_of(queue_db, result.id) == ResultStatus.CANCELLED


@pytest.mark.database_only
def test_an_expired_task_frees_its_unique_key(queue_db):
    now = timezone.now()
    late = tasks.echo.using(
        backend=queue_db.alias,
        unique_key="daily-report",
        run_after=now - timedelta(minutes=10),
        expires_at=now - timedelta(minutes=5),
    )
    first = late.enqueue()
    assert task_backends[queue_db.alias].expire_tasks() == 1
    again = tasks.echo.using(backend=queue_db.alias, unique_key="daily-report").enqueue()
    assert again.created and again.id != first.id


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"expires_at": 0}, "positive timedelta or number of seconds"),
        ({"expires_at": timedelta(seconds=-5)}, "positive timedelta or number of seconds"),
        ({"expires_at": "soon"}, "must be a datetime"),
        ({"expires_at": float("inf")}, "not a number of seconds"),
        ({"expires_at": datetime(2030, 1, 1)}, "aware datetime"),
    ],
)
def test_bad_deadlines_are_refused(options, message):
    with pytest.raises(InvalidTask, match=message):
        tasks.echo.using(**options)


def test_a_deadline_before_run_after_is_refused_at_enqueue(queue_db):
    later = tasks.echo.using(backend=queue_db.alias, run_after=3600, expires_at=60)
    with pytest.raises(InvalidTask, match=r"expires_at \(.*\) must be after run_after"):
        later.enqueue()
    past = tasks.echo.using(
        backend=queue_db.alias, expires_at=timezone.now() - timedelta(seconds=1)
    )
    with pytest.raises(InvalidTask, match="could never start"):
        past.enqueue()
    assert queue_db.queued_count() == 0


@pytest.mark.parametrize("expires", [0, -1, "1h", timedelta(0)])
def test_bad_expires_options_are_refused(expires):
    with pytest.raises(InvalidTask, match="expires must be a positive number"):
        QTask(func=tasks.plain_function, expires=expires)
