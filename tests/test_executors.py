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


WORKER_LOST = "django_tasks_q.exceptions.WorkerLost"


def test_a_crashed_child_is_a_crash_not_the_tasks_failure(queue_db, run_worker):
    """A child that dies (here exit code 3, as a segfault would) is replaced,
    and its task runs again within crash_retries (2) without using its own
    retries (max_retries=1), then once more on them: four attempts."""
    result = enqueue(queue_db, tasks.crash, 3)
    after = enqueue(queue_db, tasks.add, 2, 2)
    run_worker(queue_db, "--pool", "process", "--concurrency", "1")

    fresh = result_of(queue_db, result)
    assert fresh.status == TaskResultStatus.FAILED
    assert fresh.attempts == 4
    assert [e.exception_class_path for e in fresh.errors] == [WORKER_LOST] * 4
    assert "the process running it exited (exit code 3) during attempt 1" in (
        fresh.errors[0].traceback
    )
    assert "crash_retries are used up" in fresh.errors[2].traceback
    assert result_of(queue_db, after).return_value == 4


def test_a_child_killed_by_sigkill_runs_its_task_again(queue_db, run_worker):
    # max_retries=0: the rescue does not use the task's retries.
    result = enqueue(queue_db, tasks.kill_worker_on, queue_db.database, [1])
    run_worker(queue_db, "--pool", "process", "--concurrency", "1")

    fresh = result_of(queue_db, result)
    assert fresh.status == TaskResultStatus.SUCCESSFUL and fresh.return_value == 2
    assert fresh.attempts == 2
    assert [e.exception_class_path for e in fresh.errors] == [WORKER_LOST]
    assert "killed by SIGKILL during attempt 1" in fresh.errors[0].traceback


def test_a_task_that_keeps_killing_its_child_is_stopped(queue_db, run_worker):
    result = enqueue(queue_db, tasks.kill_worker_on, queue_db.database, list(range(1, 10)))
    run_worker(queue_db, "--pool", "process", "--concurrency", "1")

    fresh = result_of(queue_db, result)
    assert fresh.status == TaskResultStatus.FAILED
    # The first attempt and crash_retries=2 rescues; max_retries=0 adds none.
    assert fresh.attempts == 3
    assert [e.exception_class_path for e in fresh.errors] == [WORKER_LOST] * 3
    assert "has crashed 3 times" in fresh.errors[-1].traceback


def test_no_retries_left_names_the_tasks_own_max_retries_after_a_crash(queue_db, run_worker):
    result = enqueue(queue_db, tasks.kill_worker_then_retry, queue_db.database)
    run_worker(queue_db, "--pool", "process", "--concurrency", "1")

    fresh = result_of(queue_db, result)
    assert fresh.status == TaskResultStatus.FAILED
    assert [e.exception_class_path for e in fresh.errors] == [
        WORKER_LOST,
        "django_tasks_q.exceptions.Retry",
    ]
    # The rescue grew max_attempts to 2; the task's max_retries is still 0.
    assert "no retries left (max_retries=0)" in fresh.errors[1].traceback


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
