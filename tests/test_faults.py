"""Faults a task or a row brings to a worker: values a store cannot hold, rows
naming tasks it does not know, BaseException from a coroutine, a worker id too
long for the store, errors edited by hand. The worker records what it can,
fails what it must, and goes on."""

import pytest
from django.conf import settings
from django.test import override_settings
from django.utils import timezone

from django_tasks_q.backends.contract import Outcome
from django_tasks_q.compat import TaskResultStatus, task_backends
from django_tasks_q.registry import autodiscover
from django_tasks_q.worker.worker import Worker

from . import tasks


def enqueue(backend, task, *args):
    return task.using(backend=backend.alias).enqueue(*args)


def result_of(backend, result_id):
    return task_backends[backend.alias].get_result(result_id)


def burst(start_worker, backend, *args, env=None):
    """Run a --burst worker to its end: it must exit, and cleanly."""
    worker = start_worker(backend, "--burst", *args, env=env)
    code = worker.wait(timeout=60)
    assert code == 0, f"worker exited with {code}:\n{worker.output()}"
    return worker


def test_values_a_store_cannot_hold_fail_their_task_and_the_worker_goes_on(queue_db, start_worker):
    nul = enqueue(queue_db, tasks.poison, "nul")
    raised = enqueue(queue_db, tasks.poison, "raise")
    surrogate = enqueue(queue_db, tasks.poison, "surrogate")
    fine = enqueue(queue_db, tasks.add, 1, 2)
    burst(start_worker, queue_db)

    for result, problem in [(nul, "'a\\x00b' contains a NUL"), (surrogate, "a lone surrogate")]:
        failed = result_of(queue_db, result.id)
        assert failed.status == TaskResultStatus.FAILED
        assert failed.errors[0].exception_class_path == "builtins.TypeError"
        assert problem in failed.errors[0].traceback
    failed = result_of(queue_db, raised.id)
    assert failed.status == TaskResultStatus.FAILED
    assert failed.errors[0].exception_class_path == "builtins.ValueError"
    # Kept as the error said it, with the NUL escaped as repr() does.
    assert "ValueError: bad\\x00byte" in failed.errors[0].traceback
    assert result_of(queue_db, fine.id).return_value == 3


def test_an_outcome_the_database_refuses_fails_its_task_alone(postgres_queue_db):
    backend = task_backends[postgres_queue_db.alias]
    refused = enqueue(postgres_queue_db, tasks.add, 1, 2)
    kept = enqueue(postgres_queue_db, tasks.add, 3, 4)
    worker = Worker(backend, burst=True)
    _, claimed = backend.record_and_claim([], None, 2, worker.worker_id)
    by_id = {task.id: task for task in claimed}
    # As if the tasks had returned these. The worker checks return values
    # before they reach the store; this is the net behind that check.
    worker._pending = [
        Outcome(
            claimed=by_id[result.id],
            status="SUCCESSFUL",
            finished_at=timezone.now(),
            duration=0.0,
            return_value=value,
        )
        for result, value in [(refused, "a\x00b"), (kept, 7)]
    ]
    assert worker._exchange(0) == []
    assert worker._pending == []

    failed = result_of(postgres_queue_db, refused.id)
    assert failed.status == TaskResultStatus.FAILED
    [error] = failed.errors
    assert error.exception_class_path == "django_tasks_q.exceptions.OutcomeNotStored"
    assert "could not be stored (it ended successful)" in error.traceback
    assert "DataError" in error.traceback
    succeeded = result_of(postgres_queue_db, kept.id)
    assert succeeded.status == TaskResultStatus.SUCCESSFUL and succeeded.return_value == 7


def test_an_unregistered_task_fails_when_queues_lack_default(queue_db):
    bad = queue_db.insert_task("tests.tasks.removed_in_a_deploy", [], queue="emails")
    good = tasks.add.using(backend=queue_db.alias, queue_name="emails").enqueue(1, 2)
    # Tasks were declared (imported) before; a worker and get_result() now
    # run where the default backend's QUEUES lack "default". A worker
    # process cannot: this test suite's own tasks are in queue "default".
    autodiscover()  # every tasks module, while their queue "default" is valid
    default = {**settings.TASKS["default"], "QUEUES": ["emails", "other"]}
    with override_settings(TASKS={**settings.TASKS, "default": default}):
        Worker(task_backends[queue_db.alias], burst=True).run()
        failed = result_of(queue_db, bad)
    assert failed.status == TaskResultStatus.FAILED
    assert failed.task.module_path == "tests.tasks.removed_in_a_deploy"
    assert failed.errors[0].exception_class_path == "django_tasks_q.exceptions.TaskNotRegistered"
    assert result_of(queue_db, good.id).return_value == 3


def test_a_task_path_naming_a_local_function_fails_and_the_worker_goes_on(queue_db, start_worker):
    path = "tests.tasks.factory.<locals>"
    bad = queue_db.insert_task(path, [])
    good = enqueue(queue_db, tasks.add, 1, 2)
    burst(start_worker, queue_db)

    failed = result_of(queue_db, bad)
    assert failed.status == TaskResultStatus.FAILED
    assert failed.task.module_path == path
    assert failed.errors[0].exception_class_path == "django_tasks_q.exceptions.TaskNotRegistered"
    assert f"{path!r} is not a registered task" in failed.errors[0].traceback
    assert result_of(queue_db, good.id).return_value == 3


@pytest.mark.parametrize("name", ["GeneratorExit", "custom", "KeyboardInterrupt", "SystemExit"])
def test_an_async_task_raising_a_base_exception_fails_and_the_loop_goes_on(
    queue_db, start_worker, name
):
    raised = enqueue(queue_db, tasks.async_raise_base, name)
    after = enqueue(queue_db, tasks.async_add, 1, 2)
    # One slot: the second task runs on the loop once the first has ended.
    burst(start_worker, queue_db, "--concurrency", "1")

    failed = result_of(queue_db, raised.id)
    assert failed.status == TaskResultStatus.FAILED
    assert failed.errors[0].exception_class_path.endswith(
        "CustomBaseException" if name == "custom" else name
    )
    assert f"{name} from a task" in failed.errors[0].traceback
    assert result_of(queue_db, after.id).return_value == 3


def test_a_worker_id_longer_than_the_store_holds_is_refused_at_start(queue_db, start_worker):
    worker = start_worker(queue_db, "--burst", "--worker-id", "w" * 65)
    assert worker.wait(timeout=60) == 1
    lines = worker.output().strip().splitlines()
    assert lines == [
        "CommandError: The worker id 'wwwwwwwwwwwwwwwwwwww'... is 65 characters long; "
        "at most 64 fit in the queue: give a shorter --worker-id."
    ]
    with pytest.raises(ValueError, match="65 characters long"):
        Worker(task_backends[queue_db.alias], worker_id="w" * 65)
    assert queue_db.workers() == {}


@pytest.mark.parametrize("errors", [{}, {"exception_class_path": "x"}, [1, "two", {"a": 3}]])
def test_a_row_with_malformed_errors_neither_stops_the_worker_nor_get_result(
    queue_db, start_worker, errors
):
    # Retried in an hour: the worker writes the task's errors back, with this attempt's.
    tampered = enqueue(queue_db, tasks.explicit_retry, queue_db.database, 3600)
    fine = enqueue(queue_db, tasks.add, 1, 2)
    queue_db.set_errors(tampered.id, errors)
    assert result_of(queue_db, tampered.id).errors == []
    burst(start_worker, queue_db)

    retrying = result_of(queue_db, tampered.id)
    assert retrying.status == TaskResultStatus.READY
    assert [e.exception_class_path for e in retrying.errors] == ["django_tasks_q.exceptions.Retry"]
    assert result_of(queue_db, fine.id).return_value == 3
