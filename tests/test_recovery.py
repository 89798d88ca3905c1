"""What happens when things go wrong: killed workers, lost connections, wake-ups."""

import random
import signal
import time
from dataclasses import replace

from django.db import transaction
from django.utils import timezone

from django_tasks_q.backends.contract import Outcome
from django_tasks_q.backends.database import operations
from django_tasks_q.compat import TaskResultStatus, task_backends
from django_tasks_q.models import ResultStatus, Task, TaskResult

from . import tasks
from .conftest import wait_until
from .models import Execution

# Worker subprocesses here hold claims for 3 s and renew them every 0.75 s,
# so a killed worker's tasks come back quickly.
SHORT_LEASE = {"TASKQ_TEST_LEASE": "3"}


def enqueue(backend, task, *args):
    return task.using(backend=backend.alias).enqueue(*args)


def started(backend, n):
    return lambda: Execution.objects.using(backend.database).filter(label="started").count() >= n


def test_killed_worker_tasks_are_finished_by_another(queue_db, start_worker, tmp_path):
    release = tmp_path / "release"
    results = [
        enqueue(queue_db, tasks.long_task, queue_db.database, str(release)) for _ in range(4)
    ]
    first = start_worker(queue_db, "--concurrency", "4", "--worker-id", "doomed", env=SHORT_LEASE)
    wait_until(started(queue_db, 4), message="all four tasks to start")
    first.process.send_signal(signal.SIGKILL)
    first.wait()

    release.touch()
    second = start_worker(queue_db, "--worker-id", "rescuer", env=SHORT_LEASE)
    wait_until(lambda: queue_db.finished_count() == 4, message="the rescuer to finish them")
    second.signal()
    assert second.wait() == 0

    assert queue_db.queued_count() == 0
    for result in results:
        fresh = task_backends[queue_db.alias].get_result(result.id)
        assert fresh.status == TaskResultStatus.SUCCESSFUL
        assert fresh.attempts == 2
        assert fresh.worker_ids == ["doomed", "rescuer"]
        assert [e.exception_class_path for e in fresh.errors] == [
            "django_tasks_q.exceptions.WorkerLost"
        ]
        assert "worker doomed stopped renewing its lease during attempt 1" in (
            fresh.errors[0].traceback
        )
    assert "Recovered 4 task(s)" in second.output()


def test_lost_task_out_of_attempts_fails_with_worker_lost(queue_db, start_worker, tmp_path):
    result = enqueue(queue_db, tasks.wait_for_file, queue_db.database, str(tmp_path / "never"))
    doomed = start_worker(queue_db, "--worker-id", "doomed", env=SHORT_LEASE)
    wait_until(started(queue_db, 1), message="the task to start")
    doomed.process.send_signal(signal.SIGKILL)
    doomed.wait()

    # Without crash retries, the lost attempt counts against max_retries.
    rescuer = start_worker(queue_db, env={**SHORT_LEASE, "TASKQ_TEST_CRASH_RETRIES": "0"})
    wait_until(lambda: queue_db.finished_count() == 1, message="the lost task to be failed")
    rescuer.signal()
    assert rescuer.wait() == 0

    fresh = task_backends[queue_db.alias].get_result(result.id)
    assert fresh.status == TaskResultStatus.FAILED
    assert fresh.attempts == 1  # max_retries=0: the lost attempt was the only one
    assert fresh.errors[-1].exception_class_path == "django_tasks_q.exceptions.WorkerLost"
    # The dead worker was dropped from the registry once it had been silent for two leases.
    wait_until(
        lambda: "doomed" not in queue_db.workers() or rescuer.process.poll() is not None,
        message="the registry to forget the dead worker",
    )


def run_workers_until_finished(backend, start_worker) -> int:
    """Start a worker, and another each time one dies, until the one task has
    finished; returns how many died."""
    workers = [start_worker(backend, env=SHORT_LEASE)]

    def finished() -> bool:
        if workers[-1].process.poll() is not None:  # killed by its task
            workers.append(start_worker(backend, env=SHORT_LEASE))
        return backend.finished_count() == 1

    wait_until(finished, timeout=120, message="the task to finish")
    workers[-1].signal()
    assert workers[-1].wait() == 0
    return len(workers) - 1


def test_a_task_whose_worker_died_runs_again_without_using_its_retries(queue_db, start_worker):
    result = enqueue(queue_db, tasks.kill_worker_on, queue_db.database, [1])  # max_retries=0
    assert run_workers_until_finished(queue_db, start_worker) == 1

    fresh = task_backends[queue_db.alias].get_result(result.id)
    assert fresh.status == TaskResultStatus.SUCCESSFUL and fresh.return_value == 2
    # The rescue is counted: an attempt, with WorkerLost in the errors.
    assert fresh.attempts == 2
    assert [e.exception_class_path for e in fresh.errors] == [
        "django_tasks_q.exceptions.WorkerLost"
    ]


def test_a_task_that_keeps_killing_its_workers_is_stopped(queue_db, start_worker):
    result = enqueue(queue_db, tasks.kill_worker_on, queue_db.database, list(range(1, 10)))
    # The first attempt and crash_retries=2 rescues, each killing its worker.
    assert run_workers_until_finished(queue_db, start_worker) == 3

    fresh = task_backends[queue_db.alias].get_result(result.id)
    assert fresh.status == TaskResultStatus.FAILED
    assert fresh.attempts == 3
    assert [e.exception_class_path for e in fresh.errors] == [
        "django_tasks_q.exceptions.WorkerLost"
    ] * 3


def test_tasks_claimed_ahead_that_never_started_go_back_untouched(queue_db, start_worker, tmp_path):
    """A worker claims short tasks ahead of its free slots. Killed, it leaves
    those it never started to go back with no attempt counted and no
    WorkerLost (#17.4), even without retries or crash retries; the one it
    was running, started and counted in the store, is a crash as before."""
    db, alias = queue_db.database, queue_db.alias
    backend = task_backends[alias]
    # Tasks that take no time first, so that the worker claims far ahead of
    # its one slot (by their duration, however loaded the machine) and starts
    # the blocking one from there.
    quick = tasks.add.using(priority=10, backend=alias).enqueue_many([(i, i) for i in range(30)])
    blocker = tasks.wait_for_file.using(priority=5, backend=alias).enqueue(
        db, str(tmp_path / "never")
    )
    later = tasks.add.using(backend=alias).enqueue_many([(i, i) for i in range(20)])
    doomed = start_worker(queue_db, "--concurrency", "1", "--worker-id", "doomed", env=SHORT_LEASE)
    wait_until(started(queue_db, 1), message="the blocking task to start")
    # Its start is in the store (the exchange after it began), and tasks wait behind it.
    wait_until(lambda: backend.get_result(blocker.id).attempts == 1, message="its start counted")
    wait_until(lambda: queue_db.running_count() >= 2, message="tasks claimed ahead of it")
    doomed.process.send_signal(signal.SIGKILL)
    doomed.wait()

    no_crash_retries = {**SHORT_LEASE, "TASKQ_TEST_CRASH_RETRIES": "0"}
    rescuer = start_worker(queue_db, "--worker-id", "rescuer", env=no_crash_retries)
    total = len(quick) + 1 + len(later)
    wait_until(lambda: queue_db.finished_count() == total, message="every task to finish")
    rescuer.signal()
    assert rescuer.wait() == 0

    ran = backend.get_result(blocker.id)
    assert (ran.status, ran.attempts, ran.worker_ids) == (TaskResultStatus.FAILED, 1, ["doomed"])
    assert [e.exception_class_path for e in ran.errors] == ["django_tasks_q.exceptions.WorkerLost"]
    rescued = [backend.get_result(r.id) for r in later]
    # Some were claimed ahead by the doomed worker, some never claimed: all alike now.
    assert [(r.status, r.attempts, r.errors, r.worker_ids) for r in rescued] == [
        (TaskResultStatus.SUCCESSFUL, 1, [], ["rescuer"])
    ] * len(later)


def short_lease_backend(queue_db, settings):
    """The test's backend with a lease that runs out at once, and no crash retries."""
    params = settings.TASKS[queue_db.alias]
    params = {**params, "OPTIONS": {**params["OPTIONS"], "lease": 0.05, "crash_retries": 0}}
    return type(queue_db.queue_backend)(queue_db.alias, params)


def test_a_task_lost_while_claimed_ahead_goes_back_uncounted_once(queue_db, settings):
    """The window: a worker killed after starting a claimed-ahead task, before
    its next exchange told the store, leaves a task that ran but looks never
    started. It goes back uncounted once; from then on every claim starts it,
    so a task that keeps killing its workers is counted as any crash."""
    backend = short_lease_backend(queue_db, settings)
    results = tasks.add.using(backend=queue_db.alias).enqueue_many([(1, 2), (3, 4)])  # no retries
    _, claimed = backend.record_and_claim([], None, 2, "lost-1", run_now=0)
    assert [(t.ahead, t.attempts, t.worker_ids) for t in claimed] == [(True, 0, [])] * 2
    wait_until(lambda: backend.recover() == 2, message="the leases to expire")
    back = [backend.get_result(r.id) for r in results]
    assert [(r.status, r.attempts, r.errors) for r in back] == [(TaskResultStatus.READY, 0, [])] * 2

    # Claimed ahead again, they are started at once: the claim counts the attempts.
    _, claimed = backend.record_and_claim([], None, 2, "lost-2", run_now=0)
    assert [(t.ahead, t.attempts, t.worker_ids) for t in claimed] == [(False, 1, ["lost-2"])] * 2
    wait_until(lambda: backend.recover() == 2, message="the leases to expire")
    lost = [backend.get_result(r.id) for r in results]
    assert [(r.status, r.attempts) for r in lost] == [(TaskResultStatus.FAILED, 1)] * 2
    assert [[e.exception_class_path for e in r.errors] for r in lost] == [
        ["django_tasks_q.exceptions.WorkerLost"]
    ] * 2


def test_a_start_from_ahead_is_counted_before_its_outcome(queue_db, settings):
    """The worker starts claimed-ahead tasks itself and tells the store in its
    next exchange, before that exchange's outcomes, which may be of those very
    attempts: the history has the attempt, the worker and its start time.
    Started and then lost, a task is a crash."""
    backend = short_lease_backend(queue_db, settings)
    done, lost = tasks.add.using(backend=queue_db.alias).enqueue_many([(1, 2), (3, 4)])
    _, claimed = backend.record_and_claim([], None, 2, "w-1", run_now=0)
    at = timezone.now()
    started = [
        replace(t, attempts=1, worker_ids=["w-1"], started_at=at, last_attempted_at=at, ahead=False)
        for t in claimed
    ]
    outcome = Outcome(started[0], ResultStatus.SUCCESSFUL, timezone.now(), 0.01, return_value=3)
    recorded, _ = backend.record_and_claim([outcome], None, 0, "w-1", started=started)
    assert recorded == [outcome]
    finished = backend.get_result(done.id)
    assert (finished.status, finished.attempts, finished.worker_ids, finished.started_at) == (
        TaskResultStatus.SUCCESSFUL,
        1,
        ["w-1"],
        at,
    )
    running = backend.get_result(lost.id)
    assert (running.status, running.attempts, running.started_at) == (
        TaskResultStatus.RUNNING,
        1,
        at,
    )
    wait_until(lambda: backend.recover() == 1, message="the lease to expire")
    crashed = backend.get_result(lost.id)
    assert (crashed.status, crashed.attempts) == (TaskResultStatus.FAILED, 1)
    assert [e.exception_class_path for e in crashed.errors] == [
        "django_tasks_q.exceptions.WorkerLost"
    ]


def test_worker_registry_while_running(queue_db, start_worker):
    worker = start_worker(queue_db, "--queue", "emails", "--concurrency", "3", "--worker-id", "w1")
    entry = wait_until(lambda: queue_db.workers().get("w1"), message="the worker to register")
    assert (entry["backend"], entry["queues"], entry["concurrency"], entry["pool"]) == (
        queue_db.alias,
        ["emails"],
        3,
        "thread",
    )
    assert entry["pid"] == worker.process.pid
    worker.signal()
    assert worker.wait() == 0
    assert "w1" not in queue_db.workers()


def test_soak_workers_killed_and_restarted_at_random(queue_db, start_worker):
    """Every task ends up recorded exactly once, whatever is killed when."""
    count = 3000
    db = queue_db.database
    with transaction.atomic(using=db):
        ids = {
            r.id
            for r in tasks.soak_task.using(backend=queue_db.alias).enqueue_many(
                [(db, f"t{i}") for i in range(count)]
            )
        }
    rng = random.Random(20261123)  # the kill schedule is fixed; the timing is the machine's
    args = ("--concurrency", "4")
    workers = [start_worker(queue_db, *args, env=SHORT_LEASE) for _ in range(2)]
    for _ in range(6):
        time.sleep(rng.uniform(0.2, 1.0))
        victim = rng.randrange(len(workers))
        workers[victim].process.send_signal(signal.SIGKILL)
        workers[victim].wait()
        workers[victim] = start_worker(queue_db, *args, env=SHORT_LEASE)
    wait_until(lambda: queue_db.finished_count() == count, timeout=300, message="every task")
    for worker in workers:
        worker.signal()
        assert worker.wait() == 0

    assert queue_db.queued_count() == 0
    results = queue_db.finished()
    assert {r["id"] for r in results} == ids
    assert {r["status"] for r in results} == {"SUCCESSFUL"}
    # At least once: a task killed mid-run ran again; none ran zero times.
    ran = set(Execution.objects.using(db).values_list("task_id", flat=True).distinct())
    assert ran == ids


def test_terminated_connections_are_reopened_and_nothing_is_lost(server_queue_db, start_worker):
    queue_db = server_queue_db
    count = 1500
    db = queue_db.database
    tasks.soak_task.using(backend=queue_db.alias).enqueue_many(
        [(db, f"t{i}") for i in range(count)]
    )
    worker = start_worker(queue_db, "--concurrency", "4", env=SHORT_LEASE)
    kills = 0
    while queue_db.finished_count() < count and kills < 5:
        wait_until(
            lambda: queue_db.running_count() or queue_db.finished_count() == count,
            message="the worker to be busy",
        )
        kills += queue_db.kill_connections() > 0
        time.sleep(0.3)
    wait_until(lambda: queue_db.finished_count() == count, timeout=300, message="every task")
    worker.signal()
    assert worker.wait() == 0

    assert kills >= 1
    assert queue_db.queued_count() == 0
    assert {r["status"] for r in queue_db.finished()} == {"SUCCESSFUL"}
    if queue_db.vendor == "postgresql":
        # PostgreSQL fails the statement; redis-py reopens a connection cut
        # while idle without a word, so only a cut mid-call shows in the log.
        output = worker.output()
        assert "terminating connection" in output or "server closed the connection" in output


def test_enqueue_wakes_an_idle_worker(server_queue_db, start_worker):
    """SQLite has no LISTEN/NOTIFY: there, workers poll."""
    queue_db = server_queue_db
    # Poll and heartbeat so rarely that only the notification can explain a pickup.
    worker = start_worker(queue_db, "--poll-interval", "600", env={"TASKQ_TEST_LEASE": "2400"})
    wait_until(lambda: "started" in worker.output(), message="the worker to start")
    time.sleep(0.5)  # let it go idle
    for i in range(3):
        result = enqueue(queue_db, tasks.add, i, i)
        wait_until(
            lambda r=result: task_backends[queue_db.alias].get_result(r.id).is_finished,
            timeout=60,
            message="the notification to wake the worker",
        )
    worker.signal()
    assert worker.wait() == 0


def test_a_retry_from_the_admin_wakes_an_idle_postgres_worker(postgres_queue_db, start_worker):
    queue_db = postgres_queue_db
    failing = enqueue(queue_db, tasks.fail_until, queue_db.database, 2)
    Task.objects.using(queue_db.database).update(max_attempts=1)  # no retries of its own
    worker = start_worker(queue_db, "--poll-interval", "600", env={"TASKQ_TEST_LEASE": "2400"})
    backend = task_backends[queue_db.alias]
    wait_until(lambda: backend.get_result(failing.id).is_finished, message="the first failure")
    assert backend.get_result(failing.id).status == TaskResultStatus.FAILED

    time.sleep(0.5)  # let it go idle
    retried = operations.retry(TaskResult.objects.using(queue_db.database).all())
    assert retried == 1
    wait_until(
        lambda: backend.get_result(failing.id).status == TaskResultStatus.SUCCESSFUL,
        timeout=60,
        message="the notification to wake the worker",
    )
    worker.signal()
    assert worker.wait() == 0
