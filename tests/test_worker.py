"""The worker, mostly as real ``runtaskworker`` processes against real databases."""

import signal
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connections, transaction
from django.db.models import Count
from django.utils import timezone

from django_tasks_q.compat import TaskResultStatus, task_backends
from django_tasks_q.worker.worker import Worker

from . import tasks
from .conftest import wait_until
from .models import Execution


def enqueue(backend, task, *args, **kwargs):
    return task.using(backend=backend.alias).enqueue(*args, **kwargs)


def result_of(backend, result):
    return task_backends[backend.alias].get_result(result.id)


def executions(backend, **filters):
    return Execution.objects.using(backend.database).filter(**filters).order_by("id")


@pytest.mark.smoke
def test_sync_and_async_tasks_run_to_results(queue_db, run_worker):
    plain = enqueue(queue_db, tasks.add, 2, 3)
    asynchronous = enqueue(queue_db, tasks.async_add, 4, 5)
    echoed = enqueue(queue_db, tasks.echo, "a", [1], k={"x": None})
    run_worker(queue_db)

    for result, value in [
        (plain, 5),
        (asynchronous, 9),
        (echoed, {"args": ["a", [1]], "kwargs": {"k": {"x": None}}}),
    ]:
        fresh = result_of(queue_db, result)
        assert fresh.status == TaskResultStatus.SUCCESSFUL
        assert fresh.return_value == value
        assert fresh.attempts == 1 and len(fresh.worker_ids) == 1
        assert fresh.enqueued_at <= fresh.started_at <= fresh.finished_at
        assert fresh.errors == []
    # Finished tasks leave the queue for the history.
    assert queue_db.queued_count() == 0
    assert queue_db.finished_count() == 3


def test_refresh_follows_a_result_through_the_worker(queue_db, run_worker):
    result = enqueue(queue_db, tasks.add, 1, 1)
    run_worker(queue_db)
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 2


def test_async_tasks_receive_context(queue_db, run_worker):
    result = enqueue(queue_db, tasks.async_record, queue_db.database, "async")
    run_worker(queue_db)
    run = executions(queue_db).get()
    assert (run.label, run.task_id, run.attempt) == ("async", result.id, 1)


def test_priority_then_run_after_then_enqueue_order(queue_db, run_worker):
    db = queue_db.database
    now = timezone.now()
    enqueue(queue_db, tasks.record, db, "low-1")
    enqueue(queue_db, tasks.record.using(priority=-5), db, "lowest")
    enqueue(queue_db, tasks.record, db, "low-2")
    enqueue(queue_db, tasks.record.using(priority=10), db, "high")
    # Same priority, earlier run_after first, whatever the enqueue order.
    enqueue(
        queue_db,
        tasks.record.using(priority=5, run_after=now - timedelta(seconds=1)),
        db,
        "mid-late",
    )
    enqueue(
        queue_db,
        tasks.record.using(priority=5, run_after=now - timedelta(seconds=9)),
        db,
        "mid-early",
    )
    enqueue(queue_db, tasks.record.using(run_after=timedelta(hours=1)), db, "future")
    run_worker(queue_db, "--concurrency", "1")

    order = list(executions(queue_db).values_list("label", flat=True))
    assert order == ["high", "mid-early", "mid-late", "low-1", "low-2", "lowest"]
    # Not yet due: still waiting, never run.
    [waiting] = queue_db.queued()
    assert waiting["args"] == [db, "future"]


@pytest.mark.parametrize("serving", ["named queues", "every queue"])
def test_priority_order_holds_across_queues(queue_db, run_worker, serving):
    db = queue_db.database
    enqueue(queue_db, tasks.record.using(queue_name="other"), db, "other-0")
    enqueue(queue_db, tasks.record.using(queue_name="emails", priority=5), db, "emails-5")
    enqueue(queue_db, tasks.record.using(priority=10), db, "default-10")
    enqueue(queue_db, tasks.record.using(queue_name="emails", priority=-1), db, "emails-minus-1")
    enqueue(queue_db, tasks.record, db, "default-0")
    if serving == "named queues":  # the backend's QUEUES: default, emails, other
        run_worker(queue_db, "--concurrency", "1")
    else:
        Worker(task_backends[queue_db.alias], queues=None, burst=True, concurrency=1).run()

    order = list(executions(queue_db).values_list("label", flat=True))
    assert order == ["default-10", "emails-5", "other-0", "default-0", "emails-minus-1"]


def test_only_a_claim_on_its_own_skips_the_wal_flush(postgres_queue_db):
    queue_db = postgres_queue_db
    backend = task_backends[queue_db.alias]
    connection = connections[queue_db.database]
    enqueue(queue_db, tasks.add, 1, 2)
    enqueue(queue_db, tasks.add, 3, 4)

    def commit_mode(cursor):
        cursor.execute("SHOW synchronous_commit")
        return cursor.fetchone()[0]

    # Inside a caller's transaction the worker's claim leaves its commit as it was...
    with transaction.atomic(using=queue_db.database), connection.cursor() as cursor:
        _, claimed = backend.record_and_claim([], None, 1, "w-1")
        assert len(claimed) == 1 and commit_mode(cursor) == "on"
    # ... while the statement made for a claim alone turns the flush off for its
    # own transaction (in autocommit, that statement's), and no longer.
    with transaction.atomic(using=queue_db.database), connection.cursor() as cursor:
        now = timezone.now()
        claimed, _ = backend.statements.claim(
            cursor, None, 1, "w-2", now, now, run_now=1, alone=True
        )
        assert len(claimed) == 1 and commit_mode(cursor) == "off"
    with connection.cursor() as cursor:
        assert commit_mode(cursor) == "on"


def test_only_the_named_queues_are_served(queue_db, run_worker):
    db = queue_db.database
    enqueue(queue_db, tasks.record.using(queue_name="emails"), db, "email")
    enqueue(queue_db, tasks.record.using(queue_name="other"), db, "other")
    enqueue(queue_db, tasks.record, db, "default")
    run_worker(queue_db, "--queue", "emails", "--queue", "default")
    assert sorted(executions(queue_db).values_list("label", flat=True)) == ["default", "email"]
    [waiting] = queue_db.queued()
    assert waiting["queue_name"] == "other"


def test_max_tasks_stops_the_worker(queue_db, run_worker):
    for i in range(5):
        enqueue(queue_db, tasks.record, queue_db.database, f"t{i}")
    run_worker(queue_db, "--max-tasks", "3", "--concurrency", "2")
    assert executions(queue_db).count() == 3
    assert queue_db.queued_count() == 2


@pytest.mark.smoke
def test_retries_with_backoff_until_success(queue_db, start_worker):
    result = enqueue(queue_db, tasks.fail_until, queue_db.database, 3)
    worker = start_worker(queue_db)
    wait_until(lambda: queue_db.finished_count(), message="the task to finish")
    worker.signal()
    assert worker.wait() == 0

    fresh = result_of(queue_db, result)
    assert fresh.status == TaskResultStatus.SUCCESSFUL
    assert fresh.return_value == 3
    assert fresh.attempts == 3 and len(fresh.worker_ids) == 3
    assert [e.exception_class_path for e in fresh.errors] == ["builtins.ValueError"] * 2
    assert "attempt 1 fails" in fresh.errors[0].traceback
    assert "attempt 2 fails" in fresh.errors[1].traceback
    # Exponential backoff without jitter: 0.2 s, then 0.4 s at the least.
    runs = list(executions(queue_db))
    assert [r.attempt for r in runs] == [1, 2, 3]
    assert runs[1].at - runs[0].at >= timedelta(seconds=0.2)
    assert runs[2].at - runs[1].at >= timedelta(seconds=0.4)


def test_retries_until_final_failure(queue_db, start_worker):
    result = enqueue(queue_db, tasks.fail_until, queue_db.database, 99)
    worker = start_worker(queue_db)
    wait_until(lambda: queue_db.finished_count(), message="the task to fail")
    worker.signal()
    assert worker.wait() == 0

    fresh = result_of(queue_db, result)
    assert fresh.status == TaskResultStatus.FAILED
    assert fresh.attempts == 4  # the first attempt and max_retries=3 retries
    assert len(fresh.errors) == 4
    assert "attempt 4 fails" in fresh.errors[-1].traceback
    with pytest.raises(ValueError, match="failed"):
        _ = fresh.return_value
    assert "failed (attempt 1), retrying" in worker.output()


def test_explicit_retry_with_its_delay(queue_db, start_worker):
    result = enqueue(queue_db, tasks.explicit_retry, queue_db.database, 0.3)
    worker = start_worker(queue_db)
    wait_until(lambda: queue_db.finished_count(), message="the task to finish")
    worker.signal()
    assert worker.wait() == 0

    fresh = result_of(queue_db, result)
    assert fresh.status == TaskResultStatus.SUCCESSFUL and fresh.return_value == "done"
    assert [e.exception_class_path for e in fresh.errors] == ["django_tasks_q.exceptions.Retry"] * 2
    runs = list(executions(queue_db))
    assert runs[1].at - runs[0].at >= timedelta(seconds=0.3)
    assert runs[2].at - runs[1].at >= timedelta(seconds=0.3)


def test_explicit_retry_without_retries_left_fails(queue_db, run_worker):
    result = enqueue(queue_db, tasks.retry_without_retries, queue_db.database)
    run_worker(queue_db)
    fresh = result_of(queue_db, result)
    assert fresh.status == TaskResultStatus.FAILED
    assert "no retries left (max_retries=0)" in fresh.errors[0].traceback


def test_unserialisable_return_value_fails_the_task(queue_db, run_worker):
    result = enqueue(queue_db, tasks.unserialisable_return)
    run_worker(queue_db)
    fresh = result_of(queue_db, result)
    assert fresh.status == TaskResultStatus.FAILED
    assert (
        "return value of tests.tasks.unserialisable_return is not JSON" in fresh.errors[0].traceback
    )


@pytest.mark.parametrize(
    ("task_path", "reason"),
    [
        ("os.system", "it is a 'builtin_function_or_method'"),
        ("tests.tasks.plain_function", "it is a 'function'"),
        ("tests.tasks.NOT_A_TASK", "it is a 'int'"),
        ("tests.tasks.missing", "it is missing"),
        ("no_such_module.evil", "module 'no_such_module' is not loaded"),
        ("tests.tasks", "it is a 'module'"),
    ],
)
def test_rows_naming_unregistered_tasks_fail_and_the_worker_goes_on(
    queue_db, run_worker, task_path, reason, tmp_path
):
    marker = tmp_path / "pwned"
    bad = queue_db.insert_task(task_path, [f"touch {marker}"])
    good = enqueue(queue_db, tasks.add, 1, 2)
    run_worker(queue_db)

    failed = task_backends[queue_db.alias].get_result(bad)
    assert failed.status == TaskResultStatus.FAILED
    assert failed.errors[0].exception_class_path == "django_tasks_q.exceptions.TaskNotRegistered"
    assert f"{task_path!r} is not a registered task" in failed.errors[0].traceback
    assert reason in failed.errors[0].traceback
    assert result_of(queue_db, good).return_value == 3
    assert not marker.exists()
    assert not Path("/tmp/taskq-plain-function-ran").exists()


def test_get_result_in_every_state(queue_db, start_worker, tmp_path):
    release = tmp_path / "release"
    held = enqueue(queue_db, tasks.wait_for_file, queue_db.database, str(release))
    assert result_of(queue_db, held).status == TaskResultStatus.READY

    worker = start_worker(queue_db)
    wait_until(lambda: executions(queue_db, label="started").exists(), message="the task to start")
    running = result_of(queue_db, held)
    assert running.status == TaskResultStatus.RUNNING
    assert running.started_at is not None and running.finished_at is None
    assert running.attempts == 1
    with pytest.raises(ValueError, match="not finished"):
        _ = running.return_value

    release.touch()
    wait_until(lambda: queue_db.finished_count(), message="the task to finish")
    done = result_of(queue_db, held)
    assert done.status == TaskResultStatus.SUCCESSFUL and done.return_value == "released"
    worker.signal()
    assert worker.wait() == 0


def test_a_pending_retry_reads_as_ready_with_its_errors(queue_db, run_worker):
    result = enqueue(queue_db, tasks.fail_until, queue_db.database, 2)
    run_worker(queue_db, "--max-tasks", "1")
    fresh = result_of(queue_db, result)
    assert fresh.status == TaskResultStatus.READY
    assert fresh.attempts == 1 and len(fresh.errors) == 1


def test_graceful_shutdown_finishes_the_running_task(queue_db, start_worker, tmp_path):
    release = tmp_path / "release"
    result = enqueue(queue_db, tasks.wait_for_file, queue_db.database, str(release))
    waiting = enqueue(queue_db, tasks.add, 1, 1)
    worker = start_worker(queue_db, "--concurrency", "1")
    wait_until(lambda: executions(queue_db, label="started").exists(), message="the task to start")

    worker.signal(signal.SIGTERM)
    wait_until(
        lambda: "finishing 1 running task" in worker.output(), message="the worker to stop claiming"
    )
    release.touch()
    assert worker.wait() == 0

    assert result_of(queue_db, result).status == TaskResultStatus.SUCCESSFUL
    # Nothing new was claimed after the signal.
    assert result_of(queue_db, waiting).status == TaskResultStatus.READY
    assert result_of(queue_db, waiting).attempts == 0


def test_second_signal_hands_the_running_task_back(queue_db, start_worker, tmp_path):
    result = enqueue(queue_db, tasks.wait_for_file, queue_db.database, str(tmp_path / "never"))
    worker = start_worker(queue_db, "--concurrency", "1")
    wait_until(lambda: executions(queue_db, label="started").exists(), message="the task to start")

    worker.signal(signal.SIGINT)
    wait_until(lambda: "finishing 1 running task" in worker.output(), message="the first signal")
    worker.signal(signal.SIGINT)
    assert worker.wait() == 0

    [row] = queue_db.queued()
    assert (row["status"], row["attempts"], row["worker_id"], row["worker_ids"]) == (
        "READY",
        0,
        None,
        [],
    )
    assert row["started_at"] is None
    assert result_of(queue_db, result).status == TaskResultStatus.READY


def test_shutdown_timeout_hands_back_what_did_not_finish(queue_db, start_worker, tmp_path):
    enqueue(queue_db, tasks.wait_for_file, queue_db.database, str(tmp_path / "never"))
    worker = start_worker(queue_db, "--shutdown-timeout", "0.2")
    wait_until(lambda: executions(queue_db, label="started").exists(), message="the task to start")
    worker.signal()
    assert worker.wait() == 0
    assert "Handed back 1 unfinished task" in worker.output()
    assert [row["status"] for row in queue_db.queued()] == ["READY"]


def test_thread_pool_timeout_fails_the_attempt_and_retries(queue_db, run_worker):
    result = enqueue(queue_db, tasks.overrun, queue_db.database, 3)
    after = enqueue(queue_db, tasks.add, 2, 2)
    run_worker(queue_db, "--concurrency", "1")

    fresh = result_of(queue_db, result)
    assert fresh.status == TaskResultStatus.FAILED
    assert fresh.attempts == 2  # max_retries=1
    assert [e.exception_class_path for e in fresh.errors] == [
        "django_tasks_q.worker.execution.TaskTimeout"
    ] * 2
    assert "ran longer than its timeout of 0.5 s" in fresh.errors[0].traceback
    # The one slot was given back: the next task ran.
    assert result_of(queue_db, after).return_value == 4


def test_two_workers_run_each_task_exactly_once(queue_db, start_worker):
    count = 2000
    db = queue_db.database
    workers = [start_worker(queue_db, "--concurrency", "4") for _ in range(2)]
    for worker in workers:
        wait_until(lambda w=worker: "started" in w.output(), message="the workers to start")
    # All at once, so both idle workers find a full queue (for Redis: sent
    # together when the transaction commits).
    with transaction.atomic(using=db):
        for i in range(count):
            enqueue(queue_db, tasks.record, db, f"t{i}")
    wait_until(lambda: queue_db.finished_count() == count, message="every task to finish")
    for worker in workers:
        worker.signal()
        assert worker.wait() == 0, worker.output()

    assert queue_db.queued_count() == 0
    results = queue_db.finished()
    assert [r["status"] for r in results] == ["SUCCESSFUL"] * count
    runs = executions(queue_db).values("task_id").annotate(n=Count("id"))
    assert len(runs) == count
    assert {r["n"] for r in runs} == {1}
    # Both workers took part.
    per_worker = {r["worker_ids"][0] for r in results}
    assert len(per_worker) == 2


def test_unknown_backend_and_queue_are_refused(queue_db, start_worker):
    worker = start_worker(queue_db, "--queue", "nope")
    assert worker.wait() != 0
    assert "nope are not in TASKS" in worker.output()
