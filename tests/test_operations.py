"""operations.py: what the admin and the taskq command do to the queue."""

from datetime import timedelta

import psycopg
import pytest
from django.conf import settings
from django.db import connections

from django_tasks_q.backends.database import operations
from django_tasks_q.compat import TaskResultStatus, task_backends
from django_tasks_q.models import ResultStatus, Task, TaskResult, TaskStatus

from . import tasks
from .conftest import Backend, unavailable
from .factories import claim, enqueue, make_result, make_task

# About the SQL tables: the database backends only.
pytestmark = pytest.mark.database_only


def queue(backend):
    return Task.objects.using(backend.database)


def history(backend):
    return TaskResult.objects.using(backend.database)


def test_queue_database_follows_the_backend(queue_db):
    assert operations.queue_database(queue_db.alias) == queue_db.database


def test_cancel_moves_waiting_tasks_to_the_history_and_leaves_running_ones(queue_db):
    running = enqueue(queue_db, tasks.add, 1, 1)
    claim(queue_db)
    waiting = enqueue(queue_db, tasks.add, 2, 2)
    scheduled = enqueue(queue_db, tasks.add.using(run_after=timedelta(hours=1)), 3, 3)

    assert operations.cancel(queue(queue_db)) == 2

    assert list(queue(queue_db).values_list("status", flat=True)) == [TaskStatus.RUNNING]
    assert str(queue(queue_db).get().pk) == running.id
    for result in (waiting, scheduled):
        row = history(queue_db).get(pk=result.id)
        assert row.status == ResultStatus.CANCELLED and row.args == result.args
        assert row.return_value is None and row.finished_at is not None
        assert task_backends[queue_db.alias].get_result(result.id).status == "FAILED"


def test_operations_on_an_empty_selection_do_nothing(queue_db):
    enqueue(queue_db, tasks.add, 1, 2)
    nothing = queue(queue_db).filter(pk__in=[])

    assert operations.cancel(nothing) == 0
    assert operations.delete_waiting(nothing) == 0
    assert operations.retry(history(queue_db).filter(pk__in=[])) == 0
    assert queue(queue_db).count() == 1


def test_cancel_works_in_batches(queue_db):
    tasks.add.using(backend=queue_db.alias).enqueue_many([(n, n) for n in range(7)])
    assert operations.cancel(queue(queue_db), batch_size=3) == 7
    assert not queue(queue_db).exists()
    assert history(queue_db).filter(status=ResultStatus.CANCELLED).count() == 7


def test_retry_puts_failed_results_back_with_their_attempts(queue_db, run_worker):
    failed = make_result(queue_db, attempts=2)
    succeeded = make_result(queue_db, ResultStatus.SUCCESSFUL)

    assert operations.retry(history(queue_db)) == 1

    task = queue(queue_db).get()
    assert task.pk == failed.pk and task.status == TaskStatus.READY
    assert (task.attempts, task.max_attempts) == (2, 3)
    assert task.errors == failed.errors and task.worker_ids == failed.worker_ids
    assert list(history(queue_db)) == [succeeded]

    # The id is the same, so get_result follows it, through a real worker.
    run_worker(queue_db)
    result = task_backends[queue_db.alias].get_result(str(failed.pk))
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 5
    assert result.attempts == 3 and len(result.errors) == 2


def test_retry_takes_failed_cancelled_and_expired_in_batches(queue_db):
    for status in (ResultStatus.FAILED, ResultStatus.CANCELLED, ResultStatus.EXPIRED) * 2:
        make_result(queue_db, status)
    assert operations.retry(history(queue_db), batch_size=4) == 6
    assert queue(queue_db).count() == 6 and not history(queue_db).exists()


def test_rerun_enqueues_fresh_copies_and_keeps_the_results(queue_db, run_worker):
    make_result(queue_db, ResultStatus.SUCCESSFUL, args=(20, 22), attempts=2)
    make_result(queue_db, task_path="tests.tasks.fail_until", args=("x", 1))
    make_result(queue_db, task_path="tests.tasks.NOT_A_TASK")

    new_ids = operations.rerun(history(queue_db), batch_size=2)

    assert len(new_ids) == 3 and history(queue_db).count() == 3
    copies = {str(t.pk): t for t in queue(queue_db)}
    assert set(copies) == set(new_ids)
    copy = next(t for t in copies.values() if t.args == [20, 22])
    assert (copy.attempts, copy.errors, copy.worker_ids, copy.started_at) == (0, [], [], None)
    assert copy.max_attempts == 1
    # max_attempts comes from the task's own policy, as enqueue() sets it.
    assert next(t for t in copies.values() if t.task_path.endswith("fail_until")).max_attempts == 4
    assert next(t for t in copies.values() if t.task_path.endswith("NOT_A_TASK")).max_attempts == 1

    queue(queue_db).exclude(pk=copy.pk).delete()
    run_worker(queue_db)
    assert task_backends[queue_db.alias].get_result(str(copy.pk)).return_value == 42


def test_delete_waiting_and_purge_leave_running_tasks_and_other_queues(queue_db):
    make_task(queue_db, status=TaskStatus.RUNNING)
    for _ in range(3):
        make_task(queue_db)
    make_task(queue_db, run_in=timedelta(hours=1))
    kept = make_task(queue_db, queue_name="emails")

    assert operations.purge("default", using=queue_db.database, batch_size=2) == 4

    assert set(queue(queue_db).values_list("status", "queue_name")) == {
        (TaskStatus.RUNNING, "default"),
        (TaskStatus.READY, "emails"),
    }
    assert operations.delete_waiting(queue(queue_db)) == 1
    assert not queue(queue_db).filter(pk=kept.pk).exists()
    assert not history(queue_db).exists()  # deleting leaves no result


def test_prune_deletes_old_results_in_batches(queue_db):
    for _ in range(5):
        make_result(queue_db, ResultStatus.SUCCESSFUL, finished_ago=timedelta(days=10))
    old_failure = make_result(queue_db, finished_ago=timedelta(days=10))
    recent = make_result(queue_db, ResultStatus.SUCCESSFUL, finished_ago=timedelta(days=1))

    assert (
        operations.prune(
            timedelta(days=7), using=queue_db.database, statuses=["SUCCESSFUL"], batch_size=2
        )
        == 5
    )
    assert set(history(queue_db)) == {old_failure, recent}
    assert operations.prune(timedelta(days=7), using=queue_db.database) == 1
    assert list(history(queue_db)) == [recent]


@pytest.fixture
def postgres_queue(transactional_db):
    if "postgres" not in settings.TASKS:
        unavailable(settings.POSTGRES_UNAVAILABLE)
    return Backend("postgres", "postgres", "postgresql")


@pytest.mark.django_db(transaction=True, databases="__all__")
def test_operations_pass_over_rows_a_worker_has_locked(postgres_queue):
    """A claim in progress (rows locked FOR UPDATE by another transaction) is
    neither waited for nor touched: the operation skips the locked rows.
    (PostgreSQL only: on SQLite one writer at a time serialises the two.)"""
    queue_db = postgres_queue
    locked = make_task(queue_db)
    free = make_task(queue_db)
    settings = connections[queue_db.database].settings_dict
    with psycopg.connect(
        host=settings["HOST"],
        port=settings["PORT"] or 5432,
        user=settings["USER"],
        password=settings["PASSWORD"],
        dbname=settings["NAME"],
    ) as other:
        other.execute("SELECT id FROM django_tasks_q_task WHERE id = %s FOR UPDATE", [locked.pk])
        with connections[queue_db.database].cursor() as cursor:
            cursor.execute("SET lock_timeout = '5s'")  # a wait would fail, not hang
        assert operations.cancel(queue(queue_db)) == 1
        other.rollback()
    assert list(queue(queue_db)) == [locked]
    assert history(queue_db).get().pk == free.pk


def test_parse_ids_names_the_bad_one():
    with pytest.raises(ValueError, match="'nope' is not a task id"):
        operations.parse_ids(["0190b6e4-7f5c-7000-8000-000000000000", "nope"])
