"""Waiting for a result: ``QTaskResult.wait()`` and ``async_wait()``."""

import threading

import pytest
from asgiref.sync import async_to_sync
from django.db import connections, transaction

from django_tasks_q.backends.database.result_listener import ResultListener
from django_tasks_q.compat import TaskResultDoesNotExist, TaskResultStatus, task_backends
from django_tasks_q.models import Task

from . import tasks
from .conftest import wait_until
from .models import Execution


def on(backend, task):
    return task.using(backend=backend.alias)


def test_wait_returns_the_finished_result(queue_db, start_worker):
    result = on(queue_db, tasks.add).enqueue(2, 3)
    start_worker(queue_db)

    assert result.wait(timeout=60) is result
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 5


def test_async_wait_returns_the_finished_result(queue_db, start_worker):
    result = on(queue_db, tasks.add).enqueue(4, 5)
    start_worker(queue_db)

    async def wait():
        return await result.async_wait(timeout=60)

    assert async_to_sync(wait)() is result
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 9


def test_wait_for_a_failed_task_returns_it(queue_db, start_worker):
    result = on(queue_db, tasks.boom).enqueue()
    start_worker(queue_db)
    assert result.wait(timeout=60).status == TaskResultStatus.FAILED


def test_wait_raises_timeout_error_when_the_task_has_not_finished(queue_db):
    result = on(queue_db, tasks.add).enqueue(1, 1)  # no worker runs

    with pytest.raises(TimeoutError, match=result.id):
        result.wait(timeout=0.2)
    with pytest.raises(TimeoutError):
        async_to_sync(result.async_wait)(timeout=0.2)
    assert result.status == TaskResultStatus.READY


def test_wait_for_an_unknown_task_raises(queue_db):
    backend = task_backends[queue_db.alias]
    with pytest.raises(TaskResultDoesNotExist):
        backend.wait_for_result("0190a0a0-0000-7000-8000-000000000000", 5)
    with pytest.raises(TaskResultDoesNotExist):
        backend.wait_for_result("not an id", 5)


@pytest.mark.parametrize("form", ["sync", "async"])
def test_wait_is_woken_by_the_notification_on_postgres(
    postgres_queue_db, start_worker, tmp_path, monkeypatch, form
):
    queue_db, release = postgres_queue_db, tmp_path / "release"
    result = on(queue_db, tasks.wait_for_file).enqueue(queue_db.database, str(release))
    start_worker(queue_db)
    wait_until(
        lambda: Execution.objects.using(queue_db.database).filter(label="started").exists(),
        message="the task to start",
    )
    # Look again so rarely that only the notification can explain a return
    # within wait_until's timeout.
    backend = task_backends[queue_db.alias]
    monkeypatch.setattr(backend, "poll_interval", 600)
    returned = threading.Event()

    def waiter():
        try:
            if form == "sync":
                backend.wait_for_result(result.id, None)
            else:
                async_to_sync(backend.async_wait_for_result)(result.id, None)
            returned.set()
        finally:
            connections.close_all()

    threading.Thread(target=waiter, daemon=True).start()
    wait_until(
        lambda: Task.objects.using(queue_db.database).get(pk=result.id).has_dependents,
        message="the waiter to mark the task",
    )
    release.touch()
    wait_until(returned.is_set, message="the notification to wake the waiter")

    result.refresh()
    assert result.return_value == "released"
    # No one waits any more: the listener has stopped and let its connection go.
    listener = ResultListener._instances[queue_db.database]
    wait_until(lambda: listener._thread is None, message="the listener to stop")


def test_wait_survives_its_listener_connection_being_cut(
    postgres_queue_db, start_worker, tmp_path, monkeypatch, caplog
):
    queue_db, release = postgres_queue_db, tmp_path / "release"
    result = on(queue_db, tasks.wait_for_file).enqueue(queue_db.database, str(release))
    start_worker(queue_db)
    backend = task_backends[queue_db.alias]
    monkeypatch.setattr(backend, "poll_interval", 600)
    returned = threading.Event()

    def waiter():
        try:
            backend.wait_for_result(result.id, None)
            returned.set()
        finally:
            connections.close_all()

    threading.Thread(target=waiter, daemon=True).start()
    wait_until(
        lambda: Task.objects.using(queue_db.database).get(pk=result.id).has_dependents,
        message="the waiter to mark the task",
    )
    assert queue_db.kill_connections() >= 1  # the listener's (and the worker's)
    release.touch()
    # The listener reconnects and looks again, or hears the worker's notification.
    wait_until(returned.is_set, message="the waiter to return")
    assert backend.get_result(result.id).return_value == "released"
    assert "wait(): LISTEN failed" in caplog.text


def test_wait_in_the_transaction_that_enqueued_the_task_says_why_it_cannot(postgres_queue_db):
    queue_db = postgres_queue_db
    with transaction.atomic(using=queue_db.database):
        result = on(queue_db, tasks.add).enqueue(1, 1)
        with pytest.raises(RuntimeError, match="has not committed"):
            result.wait(timeout=60)


def test_wait_for_a_chained_task(postgres_queue_db, start_worker):
    queue_db = postgres_queue_db
    first = on(queue_db, tasks.add).enqueue(1, 1)
    second = on(queue_db, tasks.double).after(first).enqueue()
    start_worker(queue_db)
    assert second.wait(timeout=60).return_value == 4
