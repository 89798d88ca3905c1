"""Enqueueing and reading results, in the caller's process and transaction."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import async_to_sync
from django.db import transaction
from django.utils import timezone

from django_tasks_q import Call, InvalidTaskArguments, QTask
from django_tasks_q.compat import (
    InvalidTask,
    TaskResultDoesNotExist,
    TaskResultStatus,
    task_backends,
    task_enqueued,
)
from django_tasks_q.compat import Task as DjangoTask

from . import tasks


def _nested(depth):
    """A list in a list ... ``depth`` deep."""
    value = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.smoke
def test_enqueue_writes_a_ready_row(queue_db):
    result = tasks.echo.using(backend=queue_db.alias).enqueue(1, "two", three=[3])
    assert result.status == TaskResultStatus.READY
    assert result.backend == queue_db.alias
    assert result.args == [1, "two"] and result.kwargs == {"three": [3]}
    [row] = queue_db.queued()
    assert row["id"] == result.id
    assert row["task_path"] == "tests.tasks.echo"
    assert (row["status"], row["attempts"], row["args"], row["kwargs"]) == (
        "READY",
        0,
        [1, "two"],
        {"three": [3]},
    )
    assert row["run_after"] == row["enqueued_at"] == result.enqueued_at


def test_ids_are_short_strings_that_sort_by_time(queue_db):
    enqueue = tasks.echo.using(backend=queue_db.alias).enqueue
    ids = [enqueue(i).id for i in range(50)]
    assert all(len(i) < 64 for i in ids)
    assert ids == sorted(ids)
    assert all(uuid.UUID(i).version == 7 for i in ids)


@pytest.mark.smoke
def test_plain_django_task_uses_the_backend(queue_db):
    """An unchanged @django.tasks.task function gets this backend's task class."""
    assert isinstance(tasks.add, QTask)
    result = tasks.add.using(backend=queue_db.alias).enqueue(2, 3)
    assert task_backends[queue_db.alias].get_result(result.id).status == TaskResultStatus.READY
    assert [row["task_path"] for row in queue_db.queued()] == ["tests.tasks.add"]


def test_a_django_task_of_another_backend_class_is_queued_with_defaults(queue_db):
    """A plain ``django.tasks.Task`` (made for another backend, then moved
    here) has none of QTask's options: it is queued with their defaults."""
    plain = DjangoTask(
        priority=0,
        func=tasks.add.func,
        backend=queue_db.alias,
        queue_name="default",
        run_after=None,
    )
    assert not isinstance(plain, QTask)
    result = plain.enqueue(2, 3)
    assert (result.status, result.unique_key, result.expires_at) == ("READY", None, None)
    [row] = queue_db.queued()
    assert (row["task_path"], row["max_attempts"]) == ("tests.tasks.add", 1)


def test_rolled_back_transaction_leaves_no_task(queue_db):
    with pytest.raises(RuntimeError), transaction.atomic(using=queue_db.database):
        tasks.echo.using(backend=queue_db.alias).enqueue("lost")
        # In the database, the row is visible inside the transaction; Redis is
        # sent nothing until the commit.
        assert queue_db.queued_count() == (0 if queue_db.vendor == "redis" else 1)
        raise RuntimeError("the view failed")
    assert queue_db.queued_count() == 0


def test_committed_transaction_keeps_the_task(queue_db):
    with transaction.atomic(using=queue_db.database):
        tasks.echo.using(backend=queue_db.alias).enqueue("kept")
    assert queue_db.queued_count() == 1


@pytest.mark.parametrize(
    ("args", "kwargs", "named"),
    [
        ((datetime.now(),), {}, "argument *args[0] (position 0)"),
        ((), {"when": object()}, "argument 'when'"),
        ((1, {1: "int key"}), {}, "argument *args[1] (position 1)"),
        ((float("nan"),), {}, "argument *args[0] (position 0)"),
        ((), {"blob": b"\xff\xfe"}, "argument 'blob'"),
        ((), {"blob": b"ascii"}, "argument 'blob' is not JSON-serialisable: it contains bytes"),
        (("a\x00b",), {}, "argument *args[0] (position 0) is not JSON-serialisable: the string"),
        ((), {"k": {"x\ud800": 1}}, "'x\\ud800' contains a lone surrogate"),
        ((), {"k": ["ok", "a\x00b"]}, "'a\\x00b' contains a NUL character"),
        ((_nested(10_000),), {}, "argument *args[0] (position 0) is not JSON-serialisable: it is"),
    ],
)
def test_unserialisable_arguments_fail_at_enqueue_naming_the_argument(
    queue_db, args, kwargs, named
):
    with pytest.raises(InvalidTaskArguments) as raised:
        tasks.echo.using(backend=queue_db.alias).enqueue(*args, **kwargs)
    assert named in str(raised.value)
    assert "tests.tasks.echo" in str(raised.value)
    assert isinstance(raised.value, TypeError)  # also catchable as a TypeError
    assert queue_db.queued_count() == 0


def test_argument_is_named_by_its_parameter(queue_db):
    with pytest.raises(InvalidTaskArguments, match="argument 'b' \\(position 1\\)"):
        tasks.add.using(backend=queue_db.alias).enqueue(1, object())


def test_arguments_are_normalised_like_json(queue_db):
    result = tasks.echo.using(backend=queue_db.alias).enqueue((1, 2), {"k": (3,)})
    assert result.args == [[1, 2], {"k": [3]}]
    assert [row["args"] for row in queue_db.queued()] == [[[1, 2], {"k": [3]}]]


def test_run_after_datetime_and_timedelta(queue_db):
    at = timezone.now() + timedelta(hours=1)
    tasks.echo.using(backend=queue_db.alias, run_after=at).enqueue("at")
    before = timezone.now()
    tasks.echo.using(backend=queue_db.alias, run_after=timedelta(minutes=5)).enqueue("in")
    rows = {row["args"][0]: row for row in queue_db.queued()}
    assert rows["at"]["run_after"] == at
    delay = rows["in"]["run_after"] - rows["in"]["enqueued_at"]
    assert delay == timedelta(minutes=5)
    assert rows["in"]["enqueued_at"] >= before


def test_invalid_task_options_are_rejected():
    with pytest.raises(InvalidTask, match="not valid"):
        tasks.echo.using(queue_name="nope")
    with pytest.raises(InvalidTask, match="negative"):
        tasks.echo.using(run_after=timedelta(seconds=-1))
    with pytest.raises(InvalidTask, match="aware"):
        tasks.echo.using(run_after=datetime(2030, 1, 1))
    with pytest.raises(InvalidTask, match="max_retries"):
        QTask(func=tasks.plain_function, max_retries=-1)
    with pytest.raises(InvalidTask, match="timeout"):
        QTask(func=tasks.plain_function, timeout=0)


def test_priority_and_queue_are_stored(queue_db):
    tasks.echo.using(backend=queue_db.alias, priority=7, queue_name="emails").enqueue()
    [row] = queue_db.queued()
    assert (row["priority"], row["queue_name"]) == (7, "emails")
    result = task_backends[queue_db.alias].get_result(row["id"])
    assert (result.task.priority, result.task.queue_name) == (7, "emails")


@pytest.mark.smoke
def test_task_enqueued_signal(queue_db):
    seen = []

    def receiver(sender, task_result, **kwargs):
        seen.append(task_result.id)

    task_enqueued.connect(receiver)
    try:
        result = tasks.echo.using(backend=queue_db.alias).enqueue()
    finally:
        task_enqueued.disconnect(receiver)
    assert seen == [result.id]


def test_get_result_of_unknown_or_malformed_id(queue_db):
    backend = task_backends[queue_db.alias]
    with pytest.raises(TaskResultDoesNotExist):
        backend.get_result(str(uuid.uuid4()))
    with pytest.raises(TaskResultDoesNotExist):
        backend.get_result("not-an-id")


@pytest.mark.parametrize(
    ("status", "django_status"),
    [
        ("SUCCESSFUL", TaskResultStatus.SUCCESSFUL),
        ("FAILED", TaskResultStatus.FAILED),
        ("CANCELLED", TaskResultStatus.FAILED),
        ("EXPIRED", TaskResultStatus.FAILED),
    ],
)
def test_get_result_maps_final_states(queue_db, status, django_status):
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    result_id = queue_db.insert_result(
        task_path="tests.tasks.echo",
        status=status,
        args=[1],
        return_value={"ok": True} if status == "SUCCESSFUL" else None,
        finished_at=now,
    )
    result = task_backends[queue_db.alias].get_result(result_id)
    assert result.status == django_status
    assert result.finished_at == now
    assert result.task is tasks.echo or result.task.func is tasks.echo.func
    if status == "SUCCESSFUL":
        assert result.return_value == {"ok": True}
    else:
        with pytest.raises(ValueError, match="failed"):
            _ = result.return_value


@pytest.mark.smoke
def test_get_result_of_a_row_naming_an_unregistered_task(queue_db):
    now = timezone.now()
    result_id = queue_db.insert_result(
        task_path="gone.module.old_task", status="FAILED", finished_at=now
    )
    result = task_backends[queue_db.alias].get_result(result_id)
    assert result.task.module_path == "gone.module.old_task"
    assert result.status == TaskResultStatus.FAILED


@pytest.mark.smoke
def test_aenqueue_and_aget_result(queue_db):
    async def enqueue_and_fetch():
        result = await tasks.async_add.using(backend=queue_db.alias).aenqueue(1, 2)
        return await task_backends[queue_db.alias].aget_result(result.id)

    fetched = async_to_sync(enqueue_and_fetch)()
    assert fetched.status == TaskResultStatus.READY
    assert fetched.args == [1, 2]


@pytest.mark.smoke
def test_enqueue_many_writes_every_call_in_one_go(queue_db):
    task = tasks.echo.using(backend=queue_db.alias, priority=3)
    results = task.enqueue_many([(1, 2), {"k": "v"}, Call(args=(3,), kwargs={"x": [4]})])
    assert [r.status for r in results] == [TaskResultStatus.READY] * 3
    rows = {row["id"]: row for row in queue_db.queued()}
    assert [(rows[r.id]["args"], rows[r.id]["kwargs"]) for r in results] == [
        ([1, 2], {}),
        ([], {"k": "v"}),
        ([3], {"x": [4]}),
    ]
    assert {(row["priority"], row["task_path"], row["max_attempts"]) for row in rows.values()} == {
        (3, "tests.tasks.echo", 1)
    }
    assert [r.id for r in results] == sorted(r.id for r in results)


def test_enqueue_many_checks_every_call_before_writing(queue_db):
    task = tasks.echo.using(backend=queue_db.alias)
    with pytest.raises(InvalidTaskArguments, match=r"Call #2: .*argument \*args\[0\]"):
        task.enqueue_many([(1,), (2,), (object(),)])
    with pytest.raises(InvalidTaskArguments, match="Call #0 of tests.tasks.echo is a int"):
        task.enqueue_many([5])
    assert queue_db.queued_count() == 0


def test_max_attempts_is_taken_from_the_task(queue_db):
    tasks.fail_until.using(backend=queue_db.alias).enqueue("default", 1)
    assert [row["max_attempts"] for row in queue_db.queued()] == [4]
