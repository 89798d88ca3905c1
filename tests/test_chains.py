"""Chains: tasks that run after others (``QTask.after``), with real workers."""

import pytest
from django.db import transaction

from django_tasks_q.backends.database import chains, operations
from django_tasks_q.compat import (
    InvalidTask,
    TaskResultDoesNotExist,
    TaskResultStatus,
    task_backends,
)
from django_tasks_q.models import Task, TaskDependency, TaskResult, TaskStatus

from . import tasks
from .conftest import redis_store

pytestmark = pytest.mark.database_only


def on(backend, task):
    return task.using(backend=backend.alias)


def result_of(backend, result):
    return task_backends[backend.alias].get_result(result.id)


def stored(backend, result) -> TaskResult:
    return TaskResult.objects.using(backend.database).get(pk=result.id)


def error_of(backend, result) -> tuple[str, str]:
    error = stored(backend, result).errors[-1]
    return error["exception_class_path"], error["traceback"]


def test_a_chain_of_three_passes_each_value_on(queue_db, run_worker):
    # Enqueued in one transaction: the children are linked once it commits.
    with transaction.atomic(using=queue_db.database):
        first = on(queue_db, tasks.add).enqueue(1, 2)
        second = on(queue_db, tasks.double).after(first).enqueue()
        third = on(queue_db, tasks.double).after(second).enqueue("extra")
    assert result_of(queue_db, second).status == TaskResultStatus.READY  # waiting
    assert Task.objects.using(queue_db.database).get(pk=third.id).status == TaskStatus.BLOCKED

    run_worker(queue_db)

    assert [result_of(queue_db, r).return_value for r in (first, second, third)] == [3, 6, 12]
    assert result_of(queue_db, third).args == [6, "extra"]  # the value comes first
    assert queue_db.queued_count() == 0
    assert not TaskDependency.objects.using(queue_db.database).exists()


def test_a_task_waits_for_several_and_gets_their_values_in_order(queue_db, start_worker):
    parents = on(queue_db, tasks.add).enqueue_many([(i, i) for i in range(12)])
    combined = on(queue_db, tasks.echo).after(*reversed(parents)).enqueue("x")
    # Two workers record the parents, perhaps two at once: neither misses the child.
    workers = [start_worker(queue_db, "--burst", "--concurrency", "3") for _ in range(2)]
    for worker in workers:
        assert worker.wait() == 0, worker.output()

    result = result_of(queue_db, combined)
    assert result.status == TaskResultStatus.SUCCESSFUL
    values = [2 * i for i in reversed(range(12))]
    assert result.return_value == {"args": [values, "x"], "kwargs": {}}


def test_a_fallback_runs_when_its_task_fails_and_is_cancelled_when_it_succeeds(
    queue_db, run_worker
):
    failing = on(queue_db, tasks.boom).enqueue()
    passing = on(queue_db, tasks.add).enqueue(1, 1)
    fallback_run = on(queue_db, tasks.echo).after(failing, on="failure").enqueue("report")
    fallback_unneeded = on(queue_db, tasks.echo).after(passing, on="failure").enqueue("report")
    then_cancelled = on(queue_db, tasks.double).after(failing).enqueue()

    run_worker(queue_db)

    ran = result_of(queue_db, fallback_run)
    assert ran.status == TaskResultStatus.SUCCESSFUL
    assert ran.return_value == {"args": [failing.id, "report"], "kwargs": {}}

    assert result_of(queue_db, fallback_unneeded).status == TaskResultStatus.FAILED
    assert stored(queue_db, fallback_unneeded).status == "CANCELLED"
    path, message = error_of(queue_db, fallback_unneeded)
    assert path == "django_tasks_q.exceptions.FallbackNotNeeded"
    assert "succeeded" in message

    assert stored(queue_db, then_cancelled).status == "CANCELLED"
    path, message = error_of(queue_db, then_cancelled)
    assert path == "django_tasks_q.exceptions.DependencyFailed"
    assert f"task {failing.id} (tests.tasks.boom) it waited for ended FAILED" in message
    # The recorded error names a real exception class, as Django's TaskError needs.
    assert result_of(queue_db, then_cancelled).errors[-1].exception_class.__name__ == (
        "DependencyFailed"
    )


def test_a_failure_cancels_down_the_chain_and_reaches_a_fallback_below(queue_db, run_worker):
    failing = on(queue_db, tasks.boom).enqueue()
    second = on(queue_db, tasks.double).after(failing).enqueue()
    third = on(queue_db, tasks.double).after(second).enqueue()
    fallback = on(queue_db, tasks.echo).after(third, on="failure").enqueue()

    run_worker(queue_db)

    assert stored(queue_db, failing).status == "FAILED"
    assert stored(queue_db, second).status == "CANCELLED"
    assert stored(queue_db, third).status == "CANCELLED"
    assert str(second.id) in error_of(queue_db, third)[1]
    assert result_of(queue_db, fallback).return_value == {"args": [third.id], "kwargs": {}}
    assert queue_db.queued_count() == 0


def test_a_child_of_a_finished_task_is_resolved_at_enqueue(queue_db, run_worker):
    parent = on(queue_db, tasks.add).enqueue(2, 2)
    run_worker(queue_db)

    child = on(queue_db, tasks.double).after(parent.id).enqueue()  # an id will do
    fallback = on(queue_db, tasks.echo).after(parent, on="failure").enqueue()
    # No worker has run since: the enqueue itself saw the parent had succeeded.
    assert Task.objects.using(queue_db.database).get(pk=child.id).args == [4]
    assert stored(queue_db, fallback).status == "CANCELLED"

    run_worker(queue_db)
    assert result_of(queue_db, child).return_value == 8


def test_children_of_a_task_cancelled_by_an_operator_are_resolved_by_the_sweep(
    queue_db, run_worker
):
    parent = on(queue_db, tasks.add).enqueue(1, 1)
    child = on(queue_db, tasks.double).after(parent).enqueue()
    fallback = on(queue_db, tasks.echo).after(parent, on="failure").enqueue()
    assert operations.cancel(Task.objects.using(queue_db.database).filter(pk=parent.id)) == 1

    run_worker(queue_db)  # its first heartbeat sweeps

    assert stored(queue_db, child).status == "CANCELLED"
    assert "ended CANCELLED" in error_of(queue_db, child)[1]
    assert result_of(queue_db, fallback).return_value == {"args": [parent.id], "kwargs": {}}


def test_a_cancelled_child_never_runs_and_its_dependencies_are_cleared(queue_db, run_worker):
    parent = on(queue_db, tasks.add).enqueue(2, 2)
    child = on(queue_db, tasks.double).after(parent).enqueue()

    assert result_of(queue_db, child).cancel()
    run_worker(queue_db)  # runs the parent; its heartbeat sweeps the leftovers

    assert result_of(queue_db, parent).return_value == 4
    assert stored(queue_db, child).status == "CANCELLED"
    assert stored(queue_db, child).attempts == 0
    assert not TaskDependency.objects.using(queue_db.database).exists()


def test_a_child_whose_link_never_ran_is_resolved_by_the_sweep(queue_db, run_worker, monkeypatch):
    parent = on(queue_db, tasks.add).enqueue(3, 3)
    # As if the enqueuing process died between its commit and the link.
    monkeypatch.setattr(chains, "link", lambda *args: None)
    child = on(queue_db, tasks.double).after(parent).enqueue()
    monkeypatch.undo()
    assert not Task.objects.using(queue_db.database).get(pk=parent.id).has_dependents

    run_worker(queue_db)  # records the parent without knowing of the child
    run_worker(queue_db)  # sweeps, then runs the child

    assert result_of(queue_db, child).return_value == 12


def test_a_deleted_parent_cancels_its_children(queue_db):
    parent = on(queue_db, tasks.add).enqueue(1, 1)
    child = on(queue_db, tasks.double).after(parent).enqueue()
    assert operations.delete_waiting(Task.objects.using(queue_db.database).filter(pk=parent.id))

    assert chains.sweep(queue_db.database) == 1

    assert "was deleted" in error_of(queue_db, child)[1]


def test_after_rejects_bad_input_before_writing_anything(queue_db):
    double = on(queue_db, tasks.double)
    parent = on(queue_db, tasks.add).enqueue(1, 1)
    with pytest.raises(InvalidTask, match="at least one"):
        double.after()
    with pytest.raises(InvalidTask, match="is not a task result, a group, or an id"):
        double.after("nope")
    with pytest.raises(InvalidTask, match="on='success' or on='failure'"):
        double.after(parent, on="done")
    with pytest.raises(InvalidTask, match="more than once"):
        double.after(parent, parent.id)
    unknown = "0190a0a0-0000-7000-8000-000000000000"
    with pytest.raises(TaskResultDoesNotExist, match=unknown):
        double.after(parent, unknown).enqueue()
    assert queue_db.queued_count() == 1  # only the parent
    assert not TaskDependency.objects.using(queue_db.database).exists()


def test_the_redis_backend_rejects_after(redis_queue_db):
    parent = tasks.add.using(backend="redis").enqueue(1, 1)
    with pytest.raises(InvalidTask, match="RedisBackend does not support after"):
        tasks.double.using(backend="redis").after(parent)


def test_after_rejects_a_result_of_another_backend(queue_db):
    redis_store()  # skips when Redis is not there
    parent = tasks.add.using(backend="redis").enqueue(1, 1)
    with pytest.raises(InvalidTask, match="belongs to backend 'redis'"):
        on(queue_db, tasks.double).after(parent)
