"""The executors: the process pool, and the event loop for async tasks."""

from django_tasks_q.compat import TaskResultStatus, task_backends

from . import tasks
from .models import Execution


def enqueue(backend, task, *args):
    return task.using(backend=backend.alias).enqueue(*args)


def result_of(backend, result):
    return task_backends[backend.alias].get_result(result.id)


def labels(backend, prefix):
    runs = Execution.objects.using(backend.database).filter(label__startswith=prefix)
    return list(runs.order_by("id").values_list("label", flat=True))


def test_process_pool_runs_sync_and_async_tasks(queue_db, run_worker):
    plain = enqueue(queue_db, tasks.add, 20, 22)
    asynchronous = enqueue(queue_db, tasks.async_add, 1, 2)
    in_child = enqueue(queue_db, tasks.record_pid, queue_db.database)
    worker = run_worker(queue_db, "--pool", "process", "--concurrency", "2")

    assert result_of(queue_db, plain).return_value == 42
    assert result_of(queue_db, asynchronous).return_value == 3
    child_pid = result_of(queue_db, in_child).return_value
    assert child_pid != worker.process.pid
    assert "process pool of 2" in worker.output()


def test_process_pool_timeout_kills_the_child_and_retries(queue_db, run_worker):
    result = enqueue(queue_db, tasks.overrun, queue_db.database, 60)
    after = enqueue(queue_db, tasks.add, 1, 1)
    run_worker(queue_db, "--pool", "process", "--concurrency", "1")

    fresh = result_of(queue_db, result)
    assert fresh.status == TaskResultStatus.FAILED
    assert fresh.attempts == 2
    assert [e.exception_class_path for e in fresh.errors] == [
        "django_tasks_q.worker.execution.TaskTimeout"
    ] * 2
    assert "its process was killed" in fresh.errors[0].traceback
    # The burst worker exited promptly, without waiting out the 60 s sleeps,
    # and a fresh child ran the next task.
    assert result_of(queue_db, after).return_value == 2


def test_a_crashed_child_fails_the_attempt_and_is_replaced(queue_db, run_worker):
    result = enqueue(queue_db, tasks.crash, 3)
    after = enqueue(queue_db, tasks.add, 2, 2)
    run_worker(queue_db, "--pool", "process", "--concurrency", "1")

    fresh = result_of(queue_db, result)
    assert fresh.status == TaskResultStatus.FAILED
    assert fresh.attempts == 2  # max_retries=1
    assert {e.exception_class_path for e in fresh.errors} == {
        "django_tasks_q.worker.processes.ChildProcessDied"
    }
    assert "exit code 3" in fresh.errors[0].traceback
    assert result_of(queue_db, after).return_value == 4


def test_children_are_replaced_after_max_tasks_per_child(queue_db, run_worker):
    for _ in range(6):
        enqueue(queue_db, tasks.record_pid, queue_db.database)
    run_worker(queue_db, "--pool", "process", "--concurrency", "1", "--max-tasks-per-child", "2")
    pids = labels(queue_db, "pid:")
    assert len(pids) == 6
    assert [pids[0]] * 2 + [pids[2]] * 2 + [pids[4]] * 2 == pids
    assert len(set(pids)) == 3


def test_async_tasks_share_one_event_loop(queue_db, run_worker):
    """Four async tasks that can only finish together: they run side by side,
    on the worker's event loop thread, not one per pool thread."""
    results = [enqueue(queue_db, tasks.async_barrier, queue_db.database, 4) for _ in range(4)]
    run_worker(queue_db, "--concurrency", "4")
    assert [result_of(queue_db, r).return_value for r in results] == ["met"] * 4
    assert set(labels(queue_db, "thread:")) == {"thread:taskq-asyncio"}


def test_async_timeout_cancels_the_coroutine(queue_db, run_worker):
    result = enqueue(queue_db, tasks.async_overrun, queue_db.database)
    run_worker(queue_db)
    fresh = result_of(queue_db, result)
    assert fresh.status == TaskResultStatus.FAILED
    assert "it was cancelled" in fresh.errors[0].traceback


def test_max_tasks_per_child_needs_the_process_pool(queue_db, start_worker):
    worker = start_worker(queue_db, "--max-tasks-per-child", "2")
    assert worker.wait() != 0
    assert "--max-tasks-per-child needs --pool process" in worker.output()
