"""Cancelling waiting tasks and aborting running ones: from code on every
backend, with real workers in each executor; ``taskq abort`` and the admin."""

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse

from django_tasks_q.compat import TaskResultStatus, task_backends
from django_tasks_q.models import ResultStatus, Task, TaskResult, TaskStatus

from . import tasks
from .conftest import wait_until
from .factories import make_task
from .models import Execution
from .test_admin import TASKS_URL, admin_queue, messages_of  # noqa: F401


def enqueue(backend, task, *args):
    return task.using(backend=backend.alias).enqueue(*args)


def result_of(backend, result):
    return task_backends[backend.alias].get_result(result.id)


def status_of(backend, result):
    return {r["id"]: r["status"] for r in backend.finished()}.get(result.id)


def labels(backend):
    runs = Execution.objects.using(backend.database).order_by("id")
    return list(runs.values_list("label", flat=True))


def notified_only(backend) -> list[str]:
    """Worker flags that leave an abort nothing but the store's notification to
    arrive by (PostgreSQL NOTIFY, Redis pub/sub) within a test's wait: the
    worker's own look comes only every 10 minutes. SQLite workers poll."""
    return [] if backend.vendor == "sqlite" else ["--poll-interval", "600"]


def assert_aborted(backend, result, what_happened):
    fresh = result_of(backend, result)
    assert status_of(backend, result) == ResultStatus.CANCELLED
    assert fresh.status == TaskResultStatus.FAILED  # Django's name for it
    assert fresh.attempts == 1  # not retried, though the task allows retries
    assert [e.exception_class_path for e in fresh.errors] == [
        "django_tasks_q.exceptions.TaskAborted"
    ]
    assert what_happened in fresh.errors[0].traceback


def stop(worker):
    worker.signal()
    assert worker.wait() == 0, worker.output()


# -- from code --------------------------------------------------------------------------


def test_a_cancelled_task_never_runs(queue_db, run_worker):
    cancelled = enqueue(queue_db, tasks.record, queue_db.database, "cancelled")
    kept = enqueue(queue_db, tasks.record, queue_db.database, "kept")

    assert cancelled.cancel() is True
    assert cancelled.cancel() is False  # not waiting any more
    run_worker(queue_db)

    assert labels(queue_db) == ["kept"]
    assert status_of(queue_db, cancelled) == ResultStatus.CANCELLED
    cancelled.refresh()
    assert cancelled.status == TaskResultStatus.FAILED and cancelled.attempts == 0
    assert kept.cancel() is False and kept.abort() is False  # finished


def test_aborting_a_waiting_task_cancels_it(queue_db, run_worker):
    result = enqueue(queue_db, tasks.record, queue_db.database, "never")
    assert result.abort() is True
    run_worker(queue_db)
    assert labels(queue_db) == []
    assert status_of(queue_db, result) == ResultStatus.CANCELLED


def test_abort_stops_a_thread_pool_task_that_checks_its_context(queue_db, start_worker):
    result = enqueue(queue_db, tasks.until_aborted, queue_db.database)
    worker = start_worker(queue_db, *notified_only(queue_db))
    wait_until(lambda: labels(queue_db) == ["started"], message="the task to start")

    assert result.cancel() is False  # running: cancel leaves it alone
    assert result.abort() is True
    wait_until(lambda: status_of(queue_db, result), message="the task to end")

    assert labels(queue_db) == ["started", "saw the abort"]
    assert_aborted(queue_db, result, "was aborted")
    stop(worker)


def test_abort_cancels_an_async_task(queue_db, start_worker):
    result = enqueue(queue_db, tasks.async_until_aborted, queue_db.database)
    after = enqueue(queue_db, tasks.async_add, 1, 2)
    worker = start_worker(queue_db, "--concurrency", "1", *notified_only(queue_db))
    wait_until(lambda: labels(queue_db) == ["started"], message="the task to start")

    assert result.abort() is True
    wait_until(lambda: status_of(queue_db, result), message="the task to end")

    assert_aborted(queue_db, result, "its coroutine was cancelled")
    wait_until(lambda: status_of(queue_db, after), message="the next task")
    assert result_of(queue_db, after).return_value == 3  # the slot was freed
    stop(worker)


def test_abort_kills_a_process_pool_task_and_replaces_its_process(queue_db, start_worker):
    result = enqueue(queue_db, tasks.sleep_for_minutes, queue_db.database)
    worker = start_worker(
        queue_db, "--pool", "process", "--concurrency", "1", *notified_only(queue_db)
    )
    started = wait_until(lambda: labels(queue_db), message="the task to start")
    killed_pid = int(started[0].removeprefix("started:"))

    assert result.abort() is True
    wait_until(lambda: status_of(queue_db, result), message="the task to end")
    assert_aborted(queue_db, result, "its process was killed")

    after = enqueue(queue_db, tasks.record_pid, queue_db.database)
    wait_until(lambda: status_of(queue_db, after), message="the next task")
    assert result_of(queue_db, after).return_value not in (killed_pid, worker.process.pid)
    stop(worker)


def test_abort_of_a_claimed_task_that_has_not_started_cancels_it(queue_db, start_worker, tmp_path):
    """A process-pool child still running its start-up hook holds the claimed
    task back: aborted then, the task never starts."""
    hook_may_finish = tmp_path / "hook-may-finish"
    result = enqueue(queue_db, tasks.record, queue_db.database, "never")
    worker = start_worker(
        queue_db,
        "--pool",
        "process",
        "--concurrency",
        "1",
        env={"TASKQ_TEST_HOOK_WAIT": str(hook_may_finish)},
    )
    wait_until(lambda: queue_db.running_count() == 1, message="the claim")

    assert result.abort() is True
    wait_until(lambda: status_of(queue_db, result), message="the task to end")

    hook_may_finish.touch()
    assert_aborted(queue_db, result, "it had not started")
    assert labels(queue_db) == []
    stop(worker)


# -- the taskq command and the admin ------------------------------------------------------


@pytest.mark.database_only
def test_taskq_abort_stops_running_tasks_and_cancels_waiting_ones(queue_db, start_worker):
    running = enqueue(queue_db, tasks.until_aborted, queue_db.database)
    worker = start_worker(queue_db, "--concurrency", "1", *notified_only(queue_db))
    wait_until(lambda: labels(queue_db) == ["started"], message="the task to start")
    waiting = enqueue(queue_db, tasks.record, queue_db.database, "never")

    out = StringIO()
    call_command(
        "taskq", "--backend", queue_db.alias, "--json", "abort", running.id, waiting.id, stdout=out
    )
    assert json.loads(out.getvalue()) == {"cancelled": 1, "aborting": 1}
    wait_until(lambda: status_of(queue_db, running), message="the task to end")

    assert_aborted(queue_db, running, "was aborted")
    assert status_of(queue_db, waiting) == ResultStatus.CANCELLED
    assert labels(queue_db) == ["started", "saw the abort"]
    stop(worker)

    out = StringIO()
    call_command("taskq", "--backend", queue_db.alias, "abort", "--all", stdout=out)
    assert out.getvalue() == "Asked 0 running task(s) to stop; cancelled 0 waiting task(s).\n"


@pytest.mark.database_only
def test_admin_abort_action(admin_queue, superuser):  # noqa: F811
    running = make_task(admin_queue, status=TaskStatus.RUNNING)
    waiting = make_task(admin_queue)
    chosen = {"action": "abort_tasks", "_selected_action": [running.pk, waiting.pk]}

    asked = superuser.post(TASKS_URL, {**chosen, "index": 0}).content.decode()
    assert "Abort these tasks?" in asked
    assert not Task.objects.using(admin_queue.database).filter(abort_requested_at__isnull=False)

    done = superuser.post(TASKS_URL, {**chosen, "confirm": "yes"}, follow=True)
    assert messages_of(done) == ["Asked 1 running task to stop.", "Cancelled 1 waiting task."]
    running.refresh_from_db()
    assert running.abort_requested_at is not None  # the worker holding it sees this
    cancelled = TaskResult.objects.using(admin_queue.database).get(pk=waiting.pk)
    assert cancelled.status == ResultStatus.CANCELLED

    page = superuser.get(TASKS_URL).content.decode()
    assert "Aborting" in page


@pytest.mark.database_only
def test_the_abort_button_is_on_running_tasks_only(admin_queue, superuser):  # noqa: F811
    running = make_task(admin_queue, status=TaskStatus.RUNNING)
    waiting = make_task(admin_queue)

    def page(task):
        url = reverse("admin:django_tasks_q_task_change", args=[task.pk])
        return superuser.get(url).content.decode()

    assert 'value="abort_tasks"' in page(running)
    assert 'value="abort_tasks"' not in page(waiting)
