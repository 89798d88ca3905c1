"""The Redis functions of ``library.lua``: loading them, and one typed call each.

The Lua file documents the keys and what each function does; here each
function gets a Python signature, so no caller depends on the order of its
arguments. Times are integer microseconds since the epoch, as the functions
store them.
"""

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import redis
from redis.cluster import RedisCluster

# The library's name, and the prefix of its functions' names. Bump it when a
# function's arguments or what it writes change: see library.lua.
LIBRARY = "taskq_7"
SOURCE = (
    f"#!lua name={LIBRARY}\nlocal LIBRARY = '{LIBRARY}'\n"
    + (Path(__file__).parent / "library.lua").read_text()
)
ENQUEUE_BATCH = 1000  # calls per function call: bounds how long one blocks the server

type Client = redis.Redis | RedisCluster
type Fields = dict[str, str]  # a Redis hash, as HGETALL returns it


class EnqueueCall(NamedTuple):
    """One task of an enqueue: its id, and its arguments as JSON text."""

    id: str
    args: str
    kwargs: str
    limit_key: str = ""  # the group its task's limits count it in; "": none


class QueueCounts(NamedTuple):
    """What ``stats`` says of one queue."""

    queue: str
    waiting: int  # ready, or scheduled and due
    scheduled: int  # not due yet
    running: int
    oldest: int | None  # run_after of the longest-waiting task
    finished: list[Fields]  # per minute from first_minute: status -> count


def _hash(flat: list[str]) -> Fields:
    return dict(zip(flat[::2], flat[1::2], strict=True))


class Library:
    """The functions on one server or cluster, for the keys under ``prefix``.

    ``prefix`` is a hash tag ("{taskq}"): each call passes it as its one key,
    so a cluster client routes the call to the node holding every key.
    """

    def __init__(self, client: Client, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._load_lock = threading.Lock()
        self._loaded = False

    def load(self) -> None:
        # FUNCTION LOAD: on every primary of a cluster (redis-py sends it to
        # all of them), as each holds some slots.
        with self._load_lock:
            self._client.function_load(SOURCE, replace=True)
            self._loaded = True

    def _with_functions[T](self, operation: Callable[[], T]) -> T:
        """Run ``operation`` (calls of the functions), loading them first when needed."""
        if not self._loaded:
            self.load()
        try:
            return operation()
        except redis.ResponseError as error:
            # A restarted server without persistence forgets functions; a call
            # that found no function changed nothing, so running it again is safe.
            if "function not found" not in str(error).lower():
                raise
            self.load()
            return operation()

    def _call(self, function: str, *args: str | int) -> Any:
        return self._with_functions(
            lambda: self._client.fcall(f"{LIBRARY}_{function}", 1, self._prefix, *args)
        )

    # -- one wrapper per function, in library.lua's order --------------------------

    def enqueue(
        self,
        *,
        task_path: str,
        queue: str,
        priority: int,
        max_attempts: int,
        enqueued_at: int,
        run_after: int,
        expires_at: int | None,
        trace_context: str | None,
        limits: tuple[int | None, int | None, int | None] = (None, None, None),
        calls: Sequence[EnqueueCall],
    ) -> None:
        """Queue ``calls`` of one task, all or none: one function call per
        ENQUEUE_BATCH calls, in one transaction when there are more.
        ``trace_context``: JSON text stored with each task, if not None."""
        deadline = "" if expires_at is None else expires_at
        # The task's limits: concurrency, rate and its period in seconds.
        limit_fields = ["" if value is None else value for value in limits]
        header = (
            task_path,
            queue,
            priority,
            max_attempts,
            enqueued_at,
            run_after,
            deadline,
            trace_context or "",
            *limit_fields,
        )
        batches = [
            [field for call in calls[start : start + ENQUEUE_BATCH] for field in call]
            for start in range(0, len(calls), ENQUEUE_BATCH)
        ]
        function = f"{LIBRARY}_enqueue"

        def send() -> None:
            if len(batches) == 1:  # one function call is atomic by itself: one reply
                self._client.fcall(function, 1, self._prefix, *header, *batches[0])
                return
            # Every call has the same key, so a cluster runs them on one node.
            pipeline = self._client.pipeline(transaction=True)
            for fields in batches:
                pipeline.fcall(function, 1, self._prefix, *header, *fields)
            pipeline.execute()

        self._with_functions(send)

    def claim(
        self,
        *,
        now: int,
        lease_until: int,
        limit: int,
        worker_id: str,
        run_now: int,
        queue_limits: str,
        queues: Sequence[str],
    ) -> list[tuple[str, Fields]]:
        """Up to ``limit`` ready tasks of ``queues`` (none: every queue) that
        their limits and ``queue_limits`` (JSON: {queue: {concurrency, rate,
        period}}) let start, now held by ``worker_id``, the first ``run_now``
        started, the rest claimed ahead: (id, the task's hash) in claim order."""
        flat = self._call(
            "claim", now, lease_until, limit, worker_id, run_now, queue_limits, *queues
        )
        return [
            (task_id, _hash(fields)) for task_id, fields in zip(flat[::2], flat[1::2], strict=True)
        ]

    def record(
        self,
        *,
        worker_id: str,
        now: int,
        result_ttl: int,
        outbox: bool,
        started: Sequence[tuple[str, int]],
        outcomes: Sequence[tuple[str, str, str, str, int, int]],
    ) -> list[str]:
        """Count the attempts ``started``, each (id, when), of tasks
        ``worker_id`` claimed ahead; then store outcomes, each (id, status,
        return value JSON, errors JSON, finished_at or for RETRY the new
        run_after, max_attempts): only of tasks ``worker_id`` still holds,
        whose ids it returns."""
        marks = [field for start in started for field in start]
        fields = [field for outcome in outcomes for field in outcome]
        return self._call(
            "record", worker_id, now, result_ttl, int(outbox), len(started), *marks, *fields
        )

    def release(self, *, worker_id: str, now: int, task_ids: Sequence[str]) -> None:
        """Hand back claims as if their attempts never happened."""
        self._call("release", worker_id, now, *task_ids)

    def heartbeat(
        self,
        *,
        worker_id: str,
        now: int,
        lease_until: int,
        registry_ttl_ms: int,
        task_ids: Sequence[str],
    ) -> bool:
        """Renew the leases of ``task_ids`` and the worker's registry entry;
        False if that entry was gone."""
        return self._call("heartbeat", worker_id, now, lease_until, registry_ttl_ms, *task_ids) == 1

    def recover(
        self, *, now: int, result_ttl: int, outbox: bool, forget_before: int, crash_retries: int
    ) -> int:
        """Fail or requeue tasks whose lease expired (requeued without using
        their retries while they have fewer than ``crash_retries`` WorkerLost
        errors); drop workers silent since ``forget_before``. Returns how many tasks."""
        return self._call("recover", now, result_ttl, int(outbox), forget_before, crash_retries)

    def cancel(
        self, *, now: int, result_ttl: int, outbox: bool, abort: bool, task_ids: Sequence[str]
    ) -> tuple[int, int]:
        """Cancel waiting tasks (and with ``abort`` ask running ones to stop):
        (how many cancelled, how many asked to stop)."""
        cancelled, stopping = self._call(
            "cancel", now, result_ttl, int(outbox), int(abort), *task_ids
        )
        return cancelled, stopping

    def expire(self, *, now: int, result_ttl: int, outbox: bool) -> int:
        """Record waiting tasks past their deadline as EXPIRED, at most the
        Lua EXPIRE_BATCH a call. Returns how many."""
        return self._call("expire", now, result_ttl, int(outbox))

    def purge(self, *, queue: str, limit: int) -> int:
        """Delete up to ``limit`` waiting tasks of ``queue``. Returns how many."""
        return self._call("purge", queue, limit)

    def stats(
        self, *, now: int, first_minute: int, minutes: int, queues: Sequence[str]
    ) -> list[QueueCounts]:
        """The counts of each queue in ``queues`` or ever used (reads only)."""
        reply = self._call("stats", now, first_minute, minutes, *queues)
        return [
            QueueCounts(
                queue,
                waiting,
                scheduled,
                running,
                oldest,  # Lua's false arrives as None
                [_hash(flat) for flat in finished],
            )
            for queue, waiting, scheduled, running, oldest, finished in reply
        ]
