"""Unique tasks: one queued task per key, decided by the database's constraint."""

import hashlib
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connections, transaction

from django_tasks_q import QTask
from django_tasks_q.backends.database import DatabaseBackend
from django_tasks_q.compat import InvalidTask, TaskResultStatus, task_backends, task_enqueued
from django_tasks_q.models import Task

from . import tasks
from .conftest import wait_until
from .models import Execution

# The Redis backend refuses unique keys (see test_redis_refuses_unique_tasks).
pytestmark = pytest.mark.database_only


def keyed(backend, task, key):
    return task.using(backend=backend.alias, unique_key=key)


def queued_with_key(backend, key) -> list[str]:
    """The ids of the queued tasks holding ``key``."""
    rows = Task.objects.using(backend.database).filter(unique_key=key)
    return [str(pk) for pk in rows.values_list("id", flat=True)]


def test_a_queued_key_returns_the_queued_task(queue_db):
    first = keyed(queue_db, tasks.echo, "order:42").enqueue(1)
    again = keyed(queue_db, tasks.echo, "order:42").enqueue(2)

    assert first.created and not again.created
    assert again.id == first.id and again.status == TaskResultStatus.READY
    assert again.args == [1]  # the queued task's call, not the one refused
    assert first.unique_key == again.unique_key == "order:42"
    assert [row["id"] for row in queue_db.queued()] == [first.id]
    assert task_backends[queue_db.alias].get_result(first.id).unique_key == "order:42"
    # Other keys, and calls without one, are not affected.
    assert keyed(queue_db, tasks.echo, "order:43").enqueue(1).created
    assert tasks.echo.using(backend=queue_db.alias).enqueue(1).created
    assert queue_db.queued_count() == 3


def test_the_key_is_free_again_once_the_task_finished(queue_db, run_worker):
    first = keyed(queue_db, tasks.echo, "report").enqueue("first")
    run_worker(queue_db)
    assert task_backends[queue_db.alias].get_result(first.id).status == "SUCCESSFUL"

    second = keyed(queue_db, tasks.echo, "report").enqueue("second")
    assert second.created and second.id != first.id
    assert queued_with_key(queue_db, "report") == [second.id]


def test_a_running_task_holds_its_key(queue_db, start_worker, tmp_path):
    release = tmp_path / "release"
    held = keyed(queue_db, tasks.wait_for_file, "slow").enqueue(queue_db.database, str(release))
    worker = start_worker(queue_db)
    wait_until(
        lambda: Execution.objects.using(queue_db.database).filter(label="started").exists(),
        message="the task to start",
    )

    again = keyed(queue_db, tasks.wait_for_file, "slow").enqueue(queue_db.database, str(release))
    assert (again.id, again.created, again.status) == (held.id, False, TaskResultStatus.RUNNING)

    release.touch()
    wait_until(lambda: queue_db.finished_count() == 1, message="the task to finish")
    worker.signal()
    assert worker.wait() == 0
    assert keyed(queue_db, tasks.echo, "slow").enqueue().created


def test_derived_keys_come_from_the_task_and_its_arguments(queue_db):
    enqueue = tasks.unique_echo.using(backend=queue_db.alias).enqueue
    first = enqueue(1, flag=True, mode="a")
    same = enqueue(1, mode="a", flag=True)  # keyword order does not matter
    other = enqueue(2, flag=True, mode="a")

    assert first.created and not same.created and other.created
    assert same.id == first.id and other.id != first.id
    document = json.dumps([[1], {"flag": True, "mode": "a"}], sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(document.encode()).hexdigest()
    assert first.unique_key == f"tests.tasks.unique_echo:{digest}"
    # An explicit key wins over the derived one.
    explicit = tasks.unique_echo.using(backend=queue_db.alias, unique_key="mine").enqueue(1)
    assert explicit.created and explicit.unique_key == "mine"


def test_calls_of_one_batch_sharing_a_key(queue_db):
    results = keyed(queue_db, tasks.echo, "batch").enqueue_many([(1,), (2,), (3,)])
    assert [r.created for r in results] == [True, False, False]
    assert len({r.id for r in results}) == 1

    derived = tasks.unique_echo.using(backend=queue_db.alias).enqueue_many([(1,), (2,), (1,)])
    assert [r.created for r in derived] == [True, True, False]
    assert derived[2].id == derived[0].id != derived[1].id
    assert queue_db.queued_count() == 3


def test_a_duplicate_sends_no_task_enqueued_signal(queue_db):
    sent = []

    def receiver(sender, task_result, **kwargs):
        sent.append(task_result.id)

    task_enqueued.connect(receiver)
    try:
        first = keyed(queue_db, tasks.echo, "signal").enqueue()
        keyed(queue_db, tasks.echo, "signal").enqueue()
    finally:
        task_enqueued.disconnect(receiver)
    assert sent == [first.id]


def test_the_key_is_held_inside_the_enqueueing_transaction(queue_db):
    with transaction.atomic(using=queue_db.database):
        first = keyed(queue_db, tasks.echo, "tx").enqueue(1)
        again = keyed(queue_db, tasks.echo, "tx").enqueue(2)
    assert again.id == first.id and not again.created
    # Rolled back, the key was never taken.
    with pytest.raises(RuntimeError), transaction.atomic(using=queue_db.database):
        keyed(queue_db, tasks.echo, "rolled-back").enqueue()
        raise RuntimeError
    assert keyed(queue_db, tasks.echo, "rolled-back").enqueue().created


def test_a_holder_finishing_between_insert_and_lookup_is_retried(queue_db, monkeypatch):
    """The race the lookup can lose: the INSERT met the holder, which then left
    the queue before it was read. The call tries again and gets in."""
    holder = keyed(queue_db, tasks.echo, "gone").enqueue("holder")
    lookup = DatabaseBackend._queued_by_key
    calls = []

    def holder_finishes_first(self, keys):
        if not calls:
            Task.objects.using(queue_db.database).filter(unique_key__in=keys).delete()
        calls.append(keys)
        return lookup(self, keys)

    monkeypatch.setattr(DatabaseBackend, "_queued_by_key", holder_finishes_first)
    result = keyed(queue_db, tasks.echo, "gone").enqueue("newcomer")

    assert result.created and result.id != holder.id and result.args == ["newcomer"]
    assert queued_with_key(queue_db, "gone") == [result.id]


@pytest.mark.parametrize("attempt", range(3))
def test_concurrent_enqueues_of_one_key_queue_it_once(queue_db, attempt):
    """Done when: 16 threads, each with its own connection, enqueue the same
    key at the same moment; one task is queued and every caller gets it."""
    threads = 16
    barrier = threading.Barrier(threads)
    key = f"race:{attempt}"

    def enqueue(index):
        try:
            barrier.wait(timeout=60)
            return keyed(queue_db, tasks.echo, key).enqueue(index)
        finally:
            connections.close_all()  # this thread's own connections

    with ThreadPoolExecutor(threads) as pool:
        futures = [pool.submit(enqueue, index) for index in range(threads)]
        results = [future.result(timeout=120) for future in futures]

    [queued] = queued_with_key(queue_db, key)
    assert {result.id for result in results} == {queued}
    assert sum(result.created for result in results) == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"unique_key": 42}, "unique_key must be a non-empty string"),
        ({"unique_key": ""}, "unique_key must be a non-empty string"),
        ({"unique_key": "k" * 256}, "at most 255 characters"),
        ({"unique_key": "order\x00"}, "contains a NUL character, which no store can hold"),
        ({"unique_key": "order\ud800"}, "contains a lone surrogate, which no store can hold"),
    ],
)
def test_bad_keys_are_refused(options, message):
    with pytest.raises(InvalidTask, match=message):
        tasks.echo.using(**options)


def test_unique_must_be_a_boolean():
    with pytest.raises(InvalidTask, match="unique must be True or False"):
        QTask(func=tasks.plain_function, unique="yes")


def test_a_path_too_long_for_derived_keys_is_refused():
    def function():
        pass

    function.__qualname__ = "f" * 200
    with pytest.raises(InvalidTask, match="too long a path for derived unique keys"):
        QTask(func=function, unique=True)


def test_redis_refuses_unique_tasks(redis_queue_db):
    with pytest.raises(InvalidTask, match="RedisBackend does not support unique tasks"):
        tasks.echo.using(backend=redis_queue_db.alias, unique_key="k")
    with pytest.raises(InvalidTask, match="RedisBackend does not support unique tasks"):
        tasks.unique_echo.using(backend=redis_queue_db.alias)
    assert redis_queue_db.queued_count() == 0
