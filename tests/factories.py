"""Rows in any state, written straight to the tables: the admin, CLI and
metrics tests need histories that a worker would take a while to produce."""

from datetime import timedelta

from django.utils import timezone

from django_tasks_q.compat import task_backends
from django_tasks_q.ids import uuid7
from django_tasks_q.models import ResultStatus, Task, TaskResult, TaskStatus, Worker

TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "tests/tasks.py", line 1, in add\n'
    "ValueError: <b>boom</b>\n"
)


def enqueue(backend, task, *args, **kwargs):
    return task.using(backend=backend.alias).enqueue(*args, **kwargs)


def claim(backend, worker_id="test-worker", limit=100):
    """Mark ready tasks RUNNING, as a worker's claim does."""
    return task_backends[backend.alias].record_and_claim([], None, limit, worker_id)[1]


def make_result(
    backend,
    status=ResultStatus.FAILED,
    *,
    task_path="tests.tasks.add",
    queue_name="default",
    args=(2, 3),
    finished_ago=timedelta(seconds=1),
    finished_at=None,
    ran_for=timedelta(milliseconds=20),
    attempts=1,
    **fields,
):
    finished = finished_at or timezone.now() - finished_ago
    started = finished - ran_for
    failed = status != ResultStatus.SUCCESSFUL and status != ResultStatus.CANCELLED
    defaults = {
        "id": uuid7(),
        "task_path": task_path,
        "queue_name": queue_name,
        "status": status,
        "args": list(args),
        "kwargs": {},
        "return_value": 5 if status == ResultStatus.SUCCESSFUL else None,
        "errors": [
            {"exception_class_path": "builtins.ValueError", "traceback": TRACEBACK}
            for _ in range(attempts if failed else 0)
        ],
        "worker_ids": [f"worker-{n}" for n in range(1, attempts + 1)],
        "attempts": attempts,
        "enqueued_at": started - timedelta(seconds=1),
        "run_after": started - timedelta(seconds=1),
        "started_at": started,
        "last_attempted_at": started,
        "finished_at": finished,
    }
    return TaskResult.objects.using(backend.database).create(**{**defaults, **fields})


def make_task(backend, *, status=TaskStatus.READY, queue_name="default", run_in=None, **fields):
    now = timezone.now()
    run_after = now + run_in if run_in else now - timedelta(seconds=5)
    defaults = {
        "task_path": "tests.tasks.add",
        "queue_name": queue_name,
        "status": status,
        "args": [1, 2],
        "run_after": run_after,
        "enqueued_at": run_after,
    }
    if status == TaskStatus.RUNNING:
        defaults |= {"worker_id": "test-worker", "worker_ids": ["test-worker"], "attempts": 1}
        defaults |= {"started_at": now, "last_attempted_at": now}
        defaults |= {"lease_expires_at": now + timedelta(minutes=1)}
    return Task.objects.using(backend.database).create(**{**defaults, **fields})


def make_worker(backend, worker_id="host-1-abc", *, heartbeat_ago=timedelta(seconds=2), **fields):
    now = timezone.now()
    defaults = {
        "id": worker_id,
        "hostname": "host",
        "pid": 1234,
        "backend": backend.alias,
        "queues": ["default"],
        "concurrency": 4,
        "started_at": now - timedelta(minutes=10),
        "last_heartbeat_at": now - heartbeat_ago,
    }
    return Worker.objects.using(backend.database).create(**{**defaults, **fields})
