"""The backends under test, and how tests look inside each one's queue.

Behaviour tests ask the same questions of every store (what is waiting, what
has finished, which workers are registered) through these helpers, and write
raw entries (a task naming something that is not a task, a result in a given
state) the way the store itself would hold them.
"""

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property

from django.db import connections
from django.utils import timezone

from django_tasks_q.backends.redis.library import EnqueueCall
from django_tasks_q.compat import task_backends
from django_tasks_q.ids import uuid7
from django_tasks_q.models import Task, TaskResult, Worker

QUEUED_FIELDS = (
    "task_path",
    "queue_name",
    "priority",
    "status",
    "args",
    "kwargs",
    "run_after",
    "enqueued_at",
    "started_at",
    "attempts",
    "max_attempts",
    "worker_id",
    "worker_ids",
)


@dataclass
class Backend:
    """A TASKS alias under test; ``database`` holds its queue, or (for Redis)
    the test tasks' Execution rows and the transactions enqueueing waits for."""

    alias: str
    database: str
    vendor: str

    @property
    def queue_backend(self):
        return task_backends[self.alias]


class DatabaseStore(Backend):
    def queued(self) -> list[dict]:
        """Tasks waiting, scheduled or running, in enqueue order."""
        rows = Task.objects.using(self.database).order_by("id").values("id", *QUEUED_FIELDS)
        return [{**row, "id": str(row["id"])} for row in rows]

    def queued_count(self) -> int:
        return Task.objects.using(self.database).count()

    def running_count(self) -> int:
        return Task.objects.using(self.database).filter(status="RUNNING").count()

    def kill_connections(self) -> int:
        """Cut every other session to the queue's database (PostgreSQL only)."""
        with connections[self.database].cursor() as cursor:
            cursor.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            return cursor.fetchone()[0]

    def finished(self) -> list[dict]:
        rows = TaskResult.objects.using(self.database).values("id", "status", "worker_ids")
        return [{**row, "id": str(row["id"])} for row in rows]

    def finished_count(self) -> int:
        return TaskResult.objects.using(self.database).count()

    def workers(self) -> dict[str, dict]:
        return {w["id"]: w for w in Worker.objects.using(self.database).values()}

    def silence_worker(self, worker_id: str, since: datetime) -> None:
        """Make ``worker_id``'s last heartbeat ``since``, as if it went quiet then."""
        Worker.objects.using(self.database).filter(id=worker_id).update(last_heartbeat_at=since)

    def set_deadline(self, task_id: str, expires_at: datetime) -> None:
        """Move a queued task's deadline, as if time had passed."""
        Task.objects.using(self.database).filter(pk=task_id).update(expires_at=expires_at)

    def insert_task(self, task_path: str, args: list, queue: str = "default") -> str:
        now = timezone.now()
        row = Task.objects.using(self.database).create(
            task_path=task_path, queue_name=queue, args=args, run_after=now, enqueued_at=now
        )
        return str(row.id)

    def trace_context(self, task_id: str):
        """What a queued task holds of the trace it was enqueued in."""
        return (
            Task.objects.using(self.database)
            .values_list("trace_context", flat=True)
            .get(pk=task_id)
        )

    def set_errors(self, task_id: str, errors) -> None:
        """Overwrite a queued task's errors, as someone editing the row could."""
        Task.objects.using(self.database).filter(pk=task_id).update(errors=errors)

    def insert_result(self, *, status, finished_at, task_path, args=(), return_value=None) -> str:
        row = TaskResult.objects.using(self.database).create(
            id=uuid.uuid4(),
            task_path=task_path,
            queue_name="default",
            status=status,
            args=list(args),
            return_value=return_value,
            enqueued_at=finished_at,
            run_after=finished_at,
            finished_at=finished_at,
        )
        return str(row.id)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _us(value: datetime) -> int:
    return (value - EPOCH) // timedelta(microseconds=1)


def _datetime(value):
    return EPOCH + timedelta(microseconds=int(value)) if value else None


# Counts task hashes by status, server-side: cheap enough to poll.
COUNT_BY_STATUS = """
local counts = {}
for _, key in ipairs(redis.call('KEYS', ARGV[1])) do
  local status = redis.call('HGET', key, 'status')
  counts[status] = (counts[status] or 0) + 1
end
local flat = {}
for status, n in pairs(counts) do
  flat[#flat + 1] = status
  flat[#flat + 1] = n
end
return flat
"""


class RedisStore(Backend):
    @cached_property
    def client(self):
        return self.queue_backend.client

    @cached_property
    def node(self):
        """The server holding the queue's keys: on a cluster, the node of the
        prefix's slot (every key carries the prefix's hash tag)."""
        if not self.queue_backend.cluster:
            return self.client
        return self.client.get_redis_connection(
            self.client.get_node_from_key(self.queue_backend.prefix)
        )

    def _task_keys(self) -> list[str]:
        return self.node.keys(self.queue_backend.key("task", "*"))

    def _tasks(self) -> list[dict]:
        pipeline = self.client.pipeline(transaction=False)
        keys = self._task_keys()
        for key in keys:
            pipeline.hgetall(key)
        return [
            {"id": key.rsplit(":", 1)[1], **fields}
            for key, fields in zip(keys, pipeline.execute(), strict=True)
        ]

    def flush(self) -> None:
        """Empty the tests' queue: their logical database, or on a cluster
        (one database, shared by the test processes) the keys of their prefix."""
        if not self.queue_backend.cluster:
            self.client.flushdb()
        elif keys := self.node.keys(self.queue_backend.key("*")):
            self.node.delete(*keys)

    def _counts(self) -> dict[str, int]:
        # The prefix as the one key: a cluster runs the script where the keys are.
        backend = self.queue_backend
        flat = self.client.eval(COUNT_BY_STATUS, 1, backend.prefix, backend.key("task", "*"))
        return dict(zip(flat[::2], flat[1::2], strict=True))

    def queued(self) -> list[dict]:
        queued = [t for t in self._tasks() if t["status"] in ("READY", "RUNNING")]
        return [
            {
                "id": t["id"],
                **{f: t.get(f) for f in ("task_path", "queue_name", "status", "worker_id")},
                **{f: int(t[f]) for f in ("priority", "attempts", "max_attempts")},
                **{f: json.loads(t[f]) for f in ("args", "kwargs", "worker_ids")},
                **{f: _datetime(t.get(f)) for f in ("run_after", "enqueued_at", "started_at")},
            }
            for t in sorted(queued, key=lambda t: t["id"])
        ]

    def queued_count(self) -> int:
        counts = self._counts()
        return counts.get("READY", 0) + counts.get("RUNNING", 0)

    def running_count(self) -> int:
        return self._counts().get("RUNNING", 0)

    def kill_connections(self) -> int:
        """Cut every other client of the tests' logical database (not other
        people's: CLIENT KILL has no database filter, so pick them by id). On
        a cluster: of the node holding the prefix's slot, and there only this
        test process's, by client name."""
        kwargs = self.node.connection_pool.connection_kwargs
        db, name = kwargs.get("db", 0), kwargs.get("client_name") or ""
        mine = self.node.client_id()
        victims = [
            c["id"]
            for kind in ("normal", "pubsub")
            for c in self.node.client_list(_type=kind)
            if int(c["db"]) == db and c["name"] == name and int(c["id"]) != mine
        ]
        return sum(self.node.client_kill_filter(_id=victim) for victim in victims)

    def finished(self) -> list[dict]:
        return [
            {"id": t["id"], "status": t["status"], "worker_ids": json.loads(t["worker_ids"])}
            for t in self._tasks()
            if t["status"] not in ("READY", "RUNNING")
        ]

    def finished_count(self) -> int:
        counts = self._counts()
        return sum(n for status, n in counts.items() if status not in ("READY", "RUNNING"))

    def workers(self) -> dict[str, dict]:
        workers = {}
        for worker_id in self.client.zrange(self.queue_backend.key("workers"), 0, -1):
            entry = self.client.hgetall(self.queue_backend.key("worker", worker_id))
            if entry:
                workers[worker_id] = {
                    **entry,
                    "queues": json.loads(entry["queues"]),
                    "concurrency": int(entry["concurrency"]),
                    "pid": int(entry["pid"]),
                }
        return workers

    def silence_worker(self, worker_id: str, since: datetime) -> None:
        self.client.hset(
            self.queue_backend.key("worker", worker_id), "last_heartbeat_at", _us(since)
        )
        self.client.zadd(self.queue_backend.key("workers"), {worker_id: _us(since)})

    def set_deadline(self, task_id: str, expires_at: datetime) -> None:
        """Move a queued task's deadline, as if time had passed."""
        self.client.hset(self.queue_backend.key("task", task_id), "expires_at", _us(expires_at))
        # XX: only a READY task is in the sweep's set.
        self.client.zadd(self.queue_backend.key("expiring"), {task_id: _us(expires_at)}, xx=True)

    def trace_context(self, task_id: str):
        stored = self.client.hget(self.queue_backend.key("task", task_id), "trace_context")
        return None if stored is None else json.loads(stored)

    def set_errors(self, task_id: str, errors) -> None:
        """Overwrite a queued task's errors, as someone editing the hash could."""
        self.client.hset(self.queue_backend.key("task", task_id), "errors", json.dumps(errors))

    def insert_task(self, task_path: str, args: list, queue: str = "default") -> str:
        # Through the store's own enqueue function, as a rogue writer could.
        task_id, now = str(uuid7()), _us(timezone.now())
        self.queue_backend.functions.enqueue(
            task_path=task_path,
            queue=queue,
            priority=0,
            max_attempts=1,
            enqueued_at=now,
            run_after=now,
            expires_at=None,
            trace_context=None,
            calls=[EnqueueCall(task_id, json.dumps(args), "{}")],
        )
        return task_id

    def insert_result(self, *, status, finished_at, task_path, args=(), return_value=None) -> str:
        task_id, at = str(uuid.uuid4()), _us(finished_at)
        self.client.hset(
            self.queue_backend.key("task", task_id),
            mapping={
                "task_path": task_path,
                "queue_name": "default",
                "priority": 0,
                "status": status,
                "args": json.dumps(list(args)),
                "kwargs": "{}",
                "return_value": json.dumps(return_value),
                "errors": "[]",
                "worker_ids": "[]",
                "attempts": 1,
                "max_attempts": 1,
                "enqueued_at": at,
                "run_after": at,
                "finished_at": at,
            },
        )
        return task_id
