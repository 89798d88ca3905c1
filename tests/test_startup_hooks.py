"""Worker start-up hooks (``@on_worker_start``), with real workers: run once per
process that runs tasks, their value in every task's context, and a failing
hook stopping the worker. The hook is ``tests.tasks.test_resource``."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from django_tasks_q import on_worker_start
from django_tasks_q.compat import task_backends

from . import tasks
from .conftest import wait_until


def enqueue(backend, task, *args):
    return task.using(backend=backend.alias).enqueue(*args)


def return_values(backend, results):
    return [task_backends[backend.alias].get_result(r.id).return_value for r in results]


def hook_runs(log) -> list[int]:
    """The pid of each process that ran the hook, once per run."""
    return [int(line) for line in log.read_text().split()]


def test_thread_pool_tasks_read_the_hooks_value_from_one_run(queue_db, run_worker, tmp_path):
    log = tmp_path / "hook-runs"
    results = [enqueue(queue_db, tasks.read_resource) for _ in range(3)]
    results.append(enqueue(queue_db, tasks.async_read_resource))
    worker = run_worker(queue_db, "--concurrency", "2", env={"TASKQ_TEST_HOOK_LOG": str(log)})

    pid = worker.process.pid
    assert hook_runs(log) == [pid]  # once, in the worker process, for threads and asyncio
    assert return_values(queue_db, results) == [{"hook_pid": pid, "task_pid": pid}] * 4


def test_process_pool_children_each_run_the_hook_once(queue_db, run_worker, tmp_path):
    log = tmp_path / "hook-runs"
    results = [enqueue(queue_db, tasks.read_resource) for _ in range(4)]
    worker = run_worker(
        queue_db,
        "--pool",
        "process",
        "--concurrency",
        "2",
        "--max-tasks-per-child",
        "2",
        env={"TASKQ_TEST_HOOK_LOG": str(log)},
    )

    values = return_values(queue_db, results)
    task_pids = {value["task_pid"] for value in values}
    assert all(value["hook_pid"] == value["task_pid"] for value in values)
    # Each child ran it once before its tasks; the worker process, which runs
    # no task here, did not.
    runs = hook_runs(log)
    assert len(runs) == len(set(runs)) and task_pids <= set(runs)
    assert worker.process.pid not in runs


@pytest.mark.parametrize("pool", ["thread", "process"])
def test_a_failing_hook_stops_the_worker_and_keeps_the_tasks(queue_db, start_worker, pool):
    result = enqueue(queue_db, tasks.add, 1, 2)
    worker = start_worker(queue_db, "--pool", pool, env={"TASKQ_TEST_HOOK_FAIL": "1"})

    assert worker.wait() == 1
    output = worker.output()
    assert (
        "Worker start-up hook 'test_resource' (tests.tasks.test_resource) failed: "
        "RuntimeError: the test model is missing"
    ) in output
    assert 'raise RuntimeError("the test model is missing")' in output  # the traceback
    # Never run, never lost: the task waits for a worker that can start.
    [queued] = wait_until(queue_db.queued, message="the task handed back")
    assert (queued["id"], queued["status"], queued["attempts"]) == (result.id, "READY", 0)


def test_hook_names_must_be_unique():
    def test_resource():
        return None

    with pytest.raises(ImproperlyConfigured, match="Two worker start-up hooks are named"):
        on_worker_start(test_resource)
    with pytest.raises(TypeError, match="must be a plain function"):

        @on_worker_start
        async def connect():
            return None
