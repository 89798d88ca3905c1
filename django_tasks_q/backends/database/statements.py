"""Every statement the database store runs, behind one class per vendor.

The queue lives in two tables (see ``models.py``): ``django_tasks_q_task``
holds tasks that are waiting, blocked or running; ``django_tasks_q_taskresult``
finished ones. ``postgres.py`` and ``sqlite.py`` hold each vendor's SQL; this
module the Python around it, the same for both, and what both share: the
history's column list, and ``end()``, the one way a task leaves the queue for
the history, whether a worker recorded it, its lease ran out for good, its
deadline passed, or someone cancelled it.

Each method is one round trip (two on SQLite where it cannot feed a DELETE
into an INSERT) and works on a whole batch: batches arrive as one JSON
document expanded by the database (``jsonb_to_recordset`` / ``json_each``),
one parameter whatever their size.
"""

import json
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from django.db.backends.utils import CursorWrapper
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from ...limits import QueueLimit, parse_rate
from ..contract import (
    ClaimedTask,
    EnqueueBatch,
    Outcome,
    ResultStatus,
    TaskStatus,
    stored_errors,
)

# A finished task's row in the history, in this order.
HISTORY_COLUMNS = (
    "id, task_path, queue_name, priority, status, args, kwargs, return_value, errors, "
    "worker_ids, attempts, enqueued_at, run_after, started_at, last_attempted_at, finished_at, "
    "group_id"
)
# What enqueue writes of a task.
QUEUED_COLUMNS = (
    "id, task_path, queue_name, priority, status, args, kwargs, run_after, enqueued_at, "
    "attempts, max_attempts, errors, worker_ids, expires_at, group_id, trace_context"
)
# What a claim hands back, in this order.
CLAIMED_COLUMNS = (
    "id, task_path, queue_name, priority, args, kwargs, attempts, max_attempts, "
    "errors, worker_ids, enqueued_at, started_at, run_after, claimed_ahead, trace_context"
)

# Claimed ahead. A worker claims more tasks than it has free slots (see
# worker.py), so that short tasks are not held up by a round trip each; if
# it is killed, only the store remains to tell which of its tasks ran. So a
# claim starts an attempt (counts it, names the worker, sets the times) only
# for the tasks that go to a free slot at once; the rest are held with
# claimed_ahead set and nothing counted. When a slot frees, the worker starts
# one of those at once and tells the store (START) in its next exchange, which
# records outcomes and claims anyway, before that exchange's outcomes (they
# may be of the very tasks it starts). Recovery and release put claimed-ahead
# tasks back as they were, with no attempt and no WorkerLost error.
# The window: a worker killed between a start and its exchange leaves a task
# that ran but looks never started. So a task recovered while claimed ahead
# is marked lost_ahead, and every later claim starts it: it goes back
# uncounted once at most, and a task that kills its workers is counted as
# any crash from its second loss on.
# Tasks that have not started: what cancel() may take out of the queue.
NOT_STARTED = str(TaskStatus.NOT_STARTED)
# Results an operator may put back in the queue.
UNSUCCESSFUL = str(ResultStatus.UNSUCCESSFUL)

# A result back in the queue (an operator's retry): ready now, its attempts,
# errors and workers kept, and one more attempt allowed (a retry that fails
# again fails, not retries).
REQUEUE_FROM = """
    INSERT INTO django_tasks_q_task
        (id, task_path, queue_name, priority, status, args, kwargs, run_after, enqueued_at,
         started_at, last_attempted_at, attempts, max_attempts, errors, worker_ids, group_id)
    SELECT id, task_path, queue_name, priority, 'READY', args, kwargs, %(now)s, enqueued_at,
           started_at, last_attempted_at, attempts, attempts + 1, errors, worker_ids, group_id
    FROM {source}
"""


# Wake-ups: a queue's name when tasks become due in it; a worker's id when
# someone asks to abort a task it holds (PostgreSQL's NOTIFY; see listeners.py).
WAKE_CHANNEL = "django_tasks_q"
ABORT_CHANNEL = "django_tasks_q_abort"


def loose_index_scan(cte: str, table: str, column: str, where: str = "TRUE") -> str:
    """A recursive CTE ``<cte>(name)``: the distinct values of the indexed
    ``column`` among the rows matching ``where``, read off the index one value
    at a time (a probe per value, where SELECT DISTINCT reads every row). Its
    last name is NULL. Both vendors run it."""
    return f"""{cte}(name) AS (
            SELECT (SELECT min({column}) FROM {table} WHERE {where})
            UNION ALL
            SELECT (SELECT min({column}) FROM {table} WHERE {where} AND {column} > {cte}.name)
            FROM {cte} WHERE {cte}.name IS NOT NULL
        )"""


# The limited tasks (a task's or a queue's concurrency or rate limit; see
# limits.py) a claim may start now, as the CTE ``claimable``. Run only while
# no other limited claim runs (PostgreSQL: an advisory lock taken before this
# statement, whose snapshot then sees every earlier limited claim; SQLite: the
# write lock), so two claims cannot both take a group's last slot. A task
# claimed counts as running (so one claimed ahead of a free executor holds a
# slot) until it ends, is retried, or its lease runs out. Vendor parts:
# {queue_limits} (name, concurrency, rate, period), {served}, {least}, {lock}.
LIMITED_CLAIMABLE = """
    queue_limits AS ({queue_limits}),
    -- Groups that may start nothing now: so many running, or started lately.
    busy AS (
        SELECT limit_key AS key FROM django_tasks_q_task
        WHERE status = 'RUNNING' AND limit_key IS NOT NULL AND concurrency_limit IS NOT NULL
        GROUP BY limit_key HAVING count(*) >= min(concurrency_limit)
        UNION
        SELECT key FROM django_tasks_q_ratelimitstart WHERE expires_at > %(epoch)s
        GROUP BY key HAVING count(*) >= min(rate_limit)
    ),
    -- How many more each limited queue may start now.
    queue_room AS (
        SELECT q.name, {least}(
            COALESCE(q.concurrency - (
                SELECT count(*) FROM django_tasks_q_task AS r
                WHERE r.status = 'RUNNING' AND r.queue_name = q.name), %(unlimited)s),
            COALESCE(q.rate - (
                SELECT count(*) FROM django_tasks_q_ratelimitstart AS s
                WHERE s.key = '@queue:' || q.name AND s.expires_at > %(epoch)s), %(unlimited)s)
        ) AS room
        FROM queue_limits AS q
    ),
    -- The first limited ready tasks, in claim order, passing over the groups
    -- and queues that are full (else a long backlog of one full group would
    -- hide every other group's tasks).
    heads AS (
        SELECT t.id, t.queue_name, t.limit_key, t.concurrency_limit, t.rate_limit,
               t.priority, t.run_after
        FROM django_tasks_q_task AS t
        WHERE t.status = 'READY' AND {served} AND t.run_after <= %(now)s
          AND (t.expires_at IS NULL OR t.expires_at > %(now)s)
          AND (t.limit_key IS NOT NULL OR t.queue_name IN (SELECT name FROM queue_limits))
          AND (t.limit_key IS NULL OR t.limit_key NOT IN (SELECT key FROM busy))
          AND t.queue_name NOT IN (SELECT name FROM queue_room WHERE room <= 0)
        ORDER BY t.priority DESC, t.run_after, t.id
        LIMIT %(candidates)s {lock}
    ),
    -- Within its group, a task is taken if the group has room for it...
    in_group AS (
        SELECT h.*, row_number() OVER (
            PARTITION BY h.limit_key ORDER BY h.priority DESC, h.run_after, h.id) AS nth
        FROM heads AS h
    ),
    group_ok AS (
        SELECT g.* FROM in_group AS g
        WHERE g.limit_key IS NULL OR g.nth <= {least}(
            COALESCE(g.concurrency_limit - (
                SELECT count(*) FROM django_tasks_q_task AS r
                WHERE r.status = 'RUNNING' AND r.limit_key = g.limit_key), %(unlimited)s),
            COALESCE(g.rate_limit - (
                SELECT count(*) FROM django_tasks_q_ratelimitstart AS s
                WHERE s.key = g.limit_key AND s.expires_at > %(epoch)s), %(unlimited)s))
    ),
    -- ... and then if its queue has room for it among those.
    in_queue AS (
        SELECT o.*, row_number() OVER (
            PARTITION BY o.queue_name ORDER BY o.priority DESC, o.run_after, o.id) AS nth_in_queue
        FROM group_ok AS o
    ),
    -- A limited task starts at its claim: never claimed ahead.
    claimable AS (
        SELECT c.id, false AS ahead
        FROM in_queue AS c LEFT JOIN queue_room AS q ON q.name = c.queue_name
        WHERE q.name IS NULL OR c.nth_in_queue <= q.room
        ORDER BY c.priority DESC, c.run_after, c.id
        LIMIT %(limit)s
    )
"""
# The starts the claimed tasks ({claimed}: their ids) count against rate limits.
RATE_STARTS = """
    SELECT t.limit_key, t.rate_limit, %(epoch)s + t.rate_period
    FROM django_tasks_q_task AS t JOIN {claimed} AS c ON c.id = t.id
    WHERE t.rate_limit IS NOT NULL
    UNION ALL
    SELECT '@queue:' || t.queue_name, q.rate, %(epoch)s + q.period
    FROM django_tasks_q_task AS t JOIN {claimed} AS c ON c.id = t.id
    JOIN queue_limits AS q ON q.name = t.queue_name
    WHERE q.rate IS NOT NULL
"""
# Whether a limited task is due in the queues served (vendor parts:
# {served}, {limited_queue}): the limited claim runs only then. Two index
# probes (taskq_task_limited; taskq_task_ready for each limited queue). The
# unlimited claim returns it beside the rows it takes (no round trip of its
# own); ``limited_waiting()`` asks it alone when that claim cannot say (no
# claim to make, or on SQLite a claim that took nothing).
LIMITED_DUE = """
    EXISTS (
        SELECT 1 FROM django_tasks_q_task AS t
        WHERE t.status = 'READY' AND t.limit_key IS NOT NULL AND {served}
          AND t.run_after <= %(now)s
    ) OR EXISTS (
        SELECT 1 FROM django_tasks_q_task AS t
        WHERE t.status = 'READY' AND {limited_queue} AND {served} AND t.run_after <= %(now)s
    )
"""
# What a limited claim looks at beyond the ``limit`` it takes: the first tasks
# of groups and queues with room, some of which their group's room refuses.
LIMITED_CANDIDATES = 200
# "No limit" in the room arithmetic (NULL would make SQLite's min() NULL).
NO_LIMIT = 2**31 - 1
# Each limited task's row gets its group and limits (limits.py) after the
# INSERT, in the same transaction: the INSERT of unlimited tasks stays as it was.
MARK_LIMITED = """
    UPDATE django_tasks_q_task
    SET limit_key = {key}, concurrency_limit = %(concurrency)s,
        rate_limit = %(rate)s, rate_period = %(period)s
    FROM {calls} WHERE django_tasks_q_task.id = {id}
"""


# Blocked tasks (chains.py) that can be resolved now, or whose dependencies
# are left over (the child is no longer blocked): some task it waits for left
# the queue without succeeding, or nothing it waits for is in the queue (no
# task, and no member of a group).
STUCK_CHILDREN = """
    SELECT child FROM (
        SELECT d.child, c.id AS blocked, p.id AS queued_task, g.id AS group_id, r.status,
               CASE WHEN EXISTS (SELECT 1 FROM django_tasks_q_task AS m WHERE m.group_id = g.id)
                    THEN 1 END AS queued_group
        FROM django_tasks_q_taskdependency AS d
        LEFT JOIN django_tasks_q_task AS c ON c.id = d.child AND c.status = 'BLOCKED'
        LEFT JOIN django_tasks_q_task AS p ON p.id = d.parent
        LEFT JOIN django_tasks_q_taskresult AS r ON r.id = d.parent
        LEFT JOIN django_tasks_q_taskgroup AS g ON g.id = d.parent
    ) AS dependency
    GROUP BY child
    HAVING count(blocked) = 0 OR count(queued_task) + count(queued_group) = 0
        OR count(CASE WHEN queued_task IS NULL AND group_id IS NULL
                           AND (status IS NULL OR status <> 'SUCCESSFUL') THEN 1 END) > 0
    LIMIT %(limit)s
"""


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _datetime(value: Any) -> datetime:
    if isinstance(value, str):
        value = parse_datetime(value)
    if value is not None and value.tzinfo is None:  # SQLite stores naive UTC
        value = value.replace(tzinfo=UTC)
    return value


def _task_id(value: Any) -> str:
    """A task id as the API spells it, from a uuid (PostgreSQL) or hex (SQLite)."""
    return str(value if isinstance(value, uuid.UUID) else uuid.UUID(value))


def _claimed(row: Sequence[Any], now: datetime) -> ClaimedTask:
    return ClaimedTask(
        id=_task_id(row[0]),
        task_path=row[1],
        queue_name=row[2],
        priority=row[3],
        args=_json(row[4]),
        kwargs=_json(row[5]),
        attempts=row[6],
        max_attempts=row[7],
        errors=stored_errors(_json(row[8])),
        worker_ids=_json(row[9]),
        enqueued_at=_datetime(row[10]),
        started_at=_datetime(row[11]),
        last_attempted_at=now,
        run_after=_datetime(row[12]),
        ahead=bool(row[13]),
        trace_context=_json(row[14]),
    )


def _claim_order(row: Sequence[Any]) -> tuple[int, datetime, str]:
    # RETURNING has no order: restore the claim query's (priority, run_after, id).
    return (-row[3], _datetime(row[12]), _task_id(row[0]))


class Ended(list[tuple[str, bool]]):
    """What ``end()`` moved to the history: (id, has_dependents) per task."""

    @property
    def ids(self) -> set[str]:
        return {task_id for task_id, _ in self}

    @property
    def with_dependents(self) -> list[str]:
        """The tasks whose ending must be passed on (see chains.py)."""
        return [task_id for task_id, has_dependents in self if has_dependents]


class Statements(ABC):
    """The store's statements on one connection's vendor; see ``statements_for``."""

    vendor: ClassVar[str]
    INSERT: ClassVar[str]
    INSERT_UNIQUE: ClassVar[str]
    # Moves ended tasks into the history ("{ending}" and "{guard}": see end()),
    # and unsuccessful results back into the queue (requeue_results()).
    END: ClassVar[str]
    REQUEUE_RESULTS: ClassVar[str]
    # The source of end()'s rows: a JSON document of endings.
    ENDINGS: ClassVar[str]
    # end()'s rows for tasks whose worker stopped renewing, out of attempts,
    # and for waiting tasks past their deadline.
    ABANDONED: ClassVar[str]
    EXPIRED: ClassVar[str]
    RECOVER: ClassVar[str]
    START: ClassVar[str]
    RETRY: ClassVar[str]
    RELEASE: ClassVar[str]
    RENEW: ClassVar[str]
    ABORTS_REQUESTED: ClassVar[str]
    MARK_ABORTS: ClassVar[str]
    PRUNE: ClassVar[str]
    RERUN: ClassVar[str]
    DELETE_WAITING: ClassVar[str]
    DELETE_RESULTS: ClassVar[str]

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    @abstractmethod
    def is_missing_table(self, error: Exception) -> bool:
        """Whether ``error`` (a statement's) says one of the app's tables does not exist."""

    # -- how values are written: as parameters, and inside JSON documents ----------

    def param_datetime(self, value: datetime) -> Any:
        return value

    def param_ids(self, task_ids: Iterable[str | uuid.UUID]) -> Any:
        """Task ids as the statements' ``%(ids)s`` parameter."""
        return [str(task_id) for task_id in task_ids]

    def json_id(self, task_id: str) -> str:
        return task_id

    def json_datetime(self, value: datetime) -> str:
        return value.isoformat()

    def json_value(self, value: Any) -> Any:
        """A JSON value nested in a document."""
        return value

    # -- enqueueing -----------------------------------------------------------------

    def insert(self, cursor: CursorWrapper, batch: EnqueueBatch) -> None:
        """Queue every call of ``batch``; PostgreSQL wakes idle workers on commit."""
        document = [
            {"id": self.json_id(task_id), "args": args, "kwargs": kwargs}
            for task_id, args, kwargs in zip(batch.ids, batch.args, batch.kwargs, strict=True)
        ]
        cursor.execute(self.INSERT, self._insert_params(batch, document))

    def insert_unique(
        self, cursor: CursorWrapper, batch: EnqueueBatch, indices: list[int]
    ) -> set[str]:
        """Queue the calls ``indices`` of ``batch`` whose unique key no queued
        task holds; returns the ids of those queued."""
        assert batch.unique_keys is not None
        document = [
            {
                "id": self.json_id(batch.ids[i]),
                "args": batch.args[i],
                "kwargs": batch.kwargs[i],
                "unique_key": batch.unique_keys[i],
            }
            for i in indices
        ]
        cursor.execute(self.INSERT_UNIQUE, self._insert_params(batch, document))
        return self.inserted_ids(cursor)

    @abstractmethod
    def inserted_ids(self, cursor: CursorWrapper) -> set[str]:
        """The ids INSERT_UNIQUE queued."""

    @abstractmethod
    def counted(self, cursor: CursorWrapper) -> int:
        """How many rows the statement just run (RECOVER, MARK_ABORTS, ...) changed."""

    def _insert_params(self, batch: EnqueueBatch, document: list[dict[str, Any]]) -> dict:
        task = batch.task
        expires_at, trace_context = batch.expires_at, batch.trace_context
        return {
            "task_path": task.module_path,
            "queue_name": task.queue_name,
            "priority": task.priority,
            "run_after": self.param_datetime(batch.run_after),
            "expires_at": None if expires_at is None else self.param_datetime(expires_at),
            "now": self.param_datetime(batch.enqueued_at),
            "max_attempts": batch.max_attempts,
            "due": batch.due,
            "group_id": None if batch.group_id is None else self.json_id(batch.group_id),
            "calls": json.dumps(document),
            "trace_context": None if trace_context is None else json.dumps(trace_context),
        }

    # -- the worker's hot path ------------------------------------------------------

    @abstractmethod
    def commit_asynchronously(self, cursor: CursorWrapper) -> None:
        """This transaction's commit returns before its WAL is flushed to disk."""

    @abstractmethod
    def claim_statement(
        self,
        cursor: CursorWrapper,
        queues: list[str] | None,
        alone: bool,
        limited_queues: list[str],
        limited_due: str | None,
    ) -> tuple[str, dict[str, Any]] | None:
        """The claim, and its parameters but the common ones; None: nothing to
        claim. With ``limited_due`` (an SQL expression), its rows end with its
        value; a vendor may add a row of NULLs to say it when none is claimed."""

    def claim(
        self,
        cursor: CursorWrapper,
        queues: list[str] | None,
        limit: int,
        worker_id: str,
        now: datetime,
        lease_until: datetime,
        *,
        run_now: int,
        alone: bool = False,
        limited_queues: Sequence[str] = (),
        look_for_limited: bool = False,
    ) -> tuple[list[ClaimedTask], bool | None]:
        """Claim up to ``limit`` ready tasks of ``queues`` (None: every queue)
        that have no limits: neither their task's nor their queue's (one of
        ``limited_queues``), starting the first ``run_now`` of them; the rest
        are claimed ahead. ``alone``: the statement is its own transaction, so
        it may commit without waiting for the disk. With ``look_for_limited``,
        also whether a limited task is due (LIMITED_DUE): always on
        PostgreSQL, on SQLite only if the claim took a task (None otherwise)."""
        limited_due = self.limited_due(queues) if look_for_limited else None
        claim = self.claim_statement(cursor, queues, alone, list(limited_queues), limited_due)
        if claim is None:
            return [], None
        statement, params = claim
        params.update(
            now=self.param_datetime(now),
            limit=limit,
            run_now=run_now,
            worker=worker_id,
            lease_until=self.param_datetime(lease_until),
            **self._look_params(queues, list(limited_queues)),
        )
        cursor.execute(statement, params)
        rows = cursor.fetchall()
        due = None
        if look_for_limited:
            due = bool(rows[0][-1]) if rows else None
            rows = [row for row in rows if row[0] is not None]
        return [_claimed(row, now) for row in sorted(rows, key=_claim_order)], due

    def start(self, cursor: CursorWrapper, started: list[ClaimedTask], worker_id: str) -> None:
        """Count the attempts the worker started, of tasks it claimed ahead:
        each at its ``last_attempted_at``."""
        document = [
            {"id": self.json_id(task.id), "at": self.json_datetime(task.last_attempted_at)}
            for task in started
        ]
        cursor.execute(self.START, {"started": json.dumps(document), "worker": worker_id})

    # -- limits (see LIMITED_CLAIMABLE) ---------------------------------------------

    # Vendor parts of the limited claim: the queue limits' rows, and the test
    # of a row's queue against %(served_queues)s.
    QUEUE_LIMITS: ClassVar[str]
    SERVED_IN: ClassVar[str]
    MARK_LIMITED: ClassVar[str]

    def mark_limited(self, cursor: CursorWrapper, batch: EnqueueBatch) -> None:
        """Give the rows of ``batch`` (just inserted) their limit group and limits."""
        assert batch.limit_keys is not None
        task = batch.task
        rate = None if task.rate_limit is None else parse_rate(task.rate_limit)
        document = [
            {"id": self.json_id(task_id), "key": key}
            for task_id, key in zip(batch.ids, batch.limit_keys, strict=True)
        ]
        cursor.execute(
            self.MARK_LIMITED,
            {
                "calls": json.dumps(document),
                "concurrency": task.concurrency,
                "rate": None if rate is None else rate.count,
                "period": None if rate is None else rate.period,
            },
        )

    def _limited_params(
        self, queues: list[str] | None, queue_limits: Mapping[str, QueueLimit], now: datetime
    ) -> dict[str, Any]:
        return {
            "served_queues": None if queues is None else self.param_queues(queues),
            "queue_limits": json.dumps(
                [limit.as_json(name) for name, limit in queue_limits.items()]
            ),
            "now": self.param_datetime(now),
            "epoch": now.timestamp(),
        }

    def param_queues(self, queues: list[str]) -> Any:
        """Queue names as the statements' ``%(queues)s`` parameter."""
        return queues

    # Vendor part of LIMITED_DUE: a row's queue is one of %(limited_queues)s.
    LIMITED_QUEUE: ClassVar[str]

    def limited_due(self, queues: list[str] | None) -> str:
        """LIMITED_DUE for a worker serving ``queues`` (None: every queue)."""
        served = "TRUE" if queues is None else self.SERVED_IN
        return LIMITED_DUE.format(served=served, limited_queue=self.LIMITED_QUEUE)

    def _look_params(self, queues: list[str] | None, limited_queues: list[str]) -> dict[str, Any]:
        """LIMITED_DUE's parameters but ``now``."""
        params = {"limited_queues": self.param_queues(limited_queues)}
        if queues is not None:
            params["served_queues"] = self.param_queues(queues)
        return params

    def limited_waiting(
        self,
        cursor: CursorWrapper,
        queues: list[str] | None,
        limited_queues: list[str],
        now: datetime,
    ) -> bool:
        """Whether a task with limits (its own or its queue's, one of
        ``limited_queues``) is due in ``queues``."""
        params = {"now": self.param_datetime(now), **self._look_params(queues, limited_queues)}
        cursor.execute(f"SELECT {self.limited_due(queues)}", params)
        return bool(cursor.fetchone()[0])

    # Waits until no other limited claim runs, and holds that until the
    # transaction ends: how is the vendor's.
    LOCK_LIMITED_CLAIMS: ClassVar[str]

    def lock_limited_claims(self, cursor: CursorWrapper) -> None:
        """Wait until no other limited claim runs; hold that until this transaction ends."""
        cursor.execute(self.LOCK_LIMITED_CLAIMS)

    @abstractmethod
    def claim_limited_statement(self, queues: list[str] | None) -> str: ...

    @abstractmethod
    def count_starts(self, cursor: CursorWrapper, task_ids: list[str], params: dict) -> None:
        """Count the starts of ``task_ids`` against rate limits, if the claim did not."""

    def claim_limited(
        self,
        cursor: CursorWrapper,
        queues: list[str] | None,
        queue_limits: Mapping[str, QueueLimit],
        limit: int,
        worker_id: str,
        lease: timedelta,
    ) -> list[ClaimedTask]:
        """Claim up to ``limit`` ready tasks whose limits let them start now,
        in the caller's transaction (which must not have claimed limited
        tasks before: the lock is taken here)."""
        self.lock_limited_claims(cursor)
        # The time is read once the lock is held: limited claims then happen
        # in the order of their times, which the rate limits' windows need.
        now = timezone.now()
        params = self._limited_params(queues, queue_limits, now)
        params.update(
            limit=limit,
            worker=worker_id,
            lease_until=self.param_datetime(now + lease),
            candidates=max(LIMITED_CANDIDATES, limit),
            unlimited=NO_LIMIT,
        )
        cursor.execute(self.claim_limited_statement(queues), params)
        claimed = [_claimed(row, now) for row in sorted(cursor.fetchall(), key=_claim_order)]
        self.count_starts(cursor, [task.id for task in claimed], params)
        return claimed

    def finish(self, cursor: CursorWrapper, outcomes: list[Outcome], worker_id: str) -> Ended:
        """Move the tasks of ``outcomes`` to the history, those ``worker_id``
        still holds: one whose lease ran out and was claimed again is recorded
        by its new holder."""
        endings = [
            (o.claimed.id, o.status, o.return_value, o.error, o.finished_at) for o in outcomes
        ]
        return self.end(
            cursor,
            self.ENDINGS,
            self.endings(endings),
            guard="t.worker_id = %(worker)s",
            worker=worker_id,
        )

    def retry(self, cursor: CursorWrapper, outcomes: list[Outcome], worker_id: str) -> set[str]:
        """Put the tasks of ``outcomes`` back in the queue, due at their retry_at."""
        document = []
        for o in outcomes:
            assert o.retry_at is not None
            document.append(
                {
                    "id": self.json_id(o.claimed.id),
                    "run_after": self.json_datetime(o.retry_at),
                    "errors": self.json_value(o.errors),
                    # Grown by one if the attempt crashed and was rescued.
                    "max_attempts": o.claimed.max_attempts,
                }
            )
        cursor.execute(self.RETRY, {"outcomes": json.dumps(document), "worker": worker_id})
        return {_task_id(row[0]) for row in cursor.fetchall()}

    def release(self, cursor: CursorWrapper, task_ids: list[str], worker_id: str) -> None:
        cursor.execute(self.RELEASE, {"ids": self.param_ids(task_ids), "worker": worker_id})

    def renew(
        self, cursor: CursorWrapper, task_ids: list[str], worker_id: str, lease_until: datetime
    ) -> None:
        cursor.execute(
            self.RENEW,
            {
                "ids": self.param_ids(task_ids),
                "worker": worker_id,
                "lease_until": self.param_datetime(lease_until),
            },
        )

    def aborts_requested(
        self, cursor: CursorWrapper, task_ids: list[str], worker_id: str
    ) -> list[str]:
        cursor.execute(
            self.ABORTS_REQUESTED, {"ids": self.param_ids(task_ids), "worker": worker_id}
        )
        return [_task_id(row[0]) for row in cursor.fetchall()]

    def recover(
        self, cursor: CursorWrapper, now: datetime, crash_retries: int
    ) -> tuple[int, Ended]:
        """Tasks whose worker stopped renewing its lease: the attempt failed
        with WorkerLost. With crash retries (not counted against the task's
        own) or attempts left they are ready again; without, they are ended
        as FAILED. Those claimed ahead never started: they are ready again
        as they were. Returns how many were requeued, and those ended."""
        params = {"now": self.param_datetime(now), "crash_retries": crash_retries}
        cursor.execute(self.RECOVER, params)
        requeued = self.counted(cursor)
        return requeued, self.end(cursor, self.ABANDONED, params)

    def expire(self, cursor: CursorWrapper, now: datetime, limit: int) -> Ended:
        """End up to ``limit`` waiting tasks past their deadline as EXPIRED,
        soonest deadline first."""
        return self.end(cursor, self.EXPIRED, {"now": self.param_datetime(now), "limit": limit})

    def prune(self, cursor: CursorWrapper, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` results that finished before ``before``."""
        cursor.execute(self.PRUNE, {"before": self.param_datetime(before), "limit": limit})
        return int(cursor.rowcount)

    # -- the way out of the queue ---------------------------------------------------

    def endings(self, endings: Iterable[tuple[str, str, Any, Any, datetime]]) -> dict[str, str]:
        """``ENDINGS``'s parameter, for (id, status, return value, error, finished
        at) per task: the error (or None) is added to the task's errors."""
        return {
            "endings": json.dumps(
                [
                    {
                        "id": self.json_id(task_id),
                        "status": status,
                        "return_value": self.json_value(return_value),
                        "error": None if error is None else self.json_value(error),
                        "finished_at": self.json_datetime(finished_at),
                    }
                    for task_id, status, return_value, error, finished_at in endings
                ]
            )
        }

    def end(
        self,
        cursor: CursorWrapper,
        ending: str,
        params: dict[str, Any],
        guard: str = "TRUE",
        **more: Any,
    ) -> Ended:
        """Move the tasks that ``ending`` (a query of id, status, return_value,
        error, finished_at) names, and ``guard`` allows, from the queue to the
        history, in the caller's transaction. The only INSERT into the history."""
        cursor.execute(self.END.format(ending=ending, guard=guard), {**params, **more})
        return self.ended(cursor)

    @abstractmethod
    def ended(self, cursor: CursorWrapper) -> Ended:
        """Once END has run: the tasks it moved, with their queue rows gone."""

    # -- what operators do (operations.py) -------------------------------------------

    def cancel(self, cursor: CursorWrapper, task_ids: Iterable[uuid.UUID], now: datetime) -> Ended:
        """End the not yet started tasks among ``task_ids`` as CANCELLED."""
        endings = ((str(task_id), "CANCELLED", None, None, now) for task_id in task_ids)
        return self.end(
            cursor, self.ENDINGS, self.endings(endings), guard=f"t.status IN {NOT_STARTED}"
        )

    def cancel_blocked(
        self, cursor: CursorWrapper, errors: dict[str, dict[str, str]], now: datetime
    ) -> Ended:
        """End blocked tasks as CANCELLED, each with its error (chains.py)."""
        endings = ((task_id, "CANCELLED", None, error, now) for task_id, error in errors.items())
        return self.end(cursor, self.ENDINGS, self.endings(endings), guard="t.status = 'BLOCKED'")

    def mark_aborts(
        self, cursor: CursorWrapper, task_ids: Iterable[uuid.UUID], now: datetime
    ) -> int:
        """Ask the workers of the running tasks among ``task_ids`` to stop them
        (PostgreSQL also notifies each of them once, on commit); returns how many."""
        cursor.execute(
            self.MARK_ABORTS, {"ids": self.param_ids(task_ids), "now": self.param_datetime(now)}
        )
        return self.counted(cursor)

    def requeue_results(
        self, cursor: CursorWrapper, result_ids: Iterable[uuid.UUID], now: datetime
    ) -> int:
        """Move the unsuccessful results among ``result_ids`` back into the
        queue, ready at ``now``, keeping their ids, attempts, errors and
        workers, with one more attempt allowed. Returns how many."""
        params = {"ids": self.param_ids(result_ids), "now": self.param_datetime(now)}
        cursor.execute(self.REQUEUE_RESULTS, params)
        return self.requeued(cursor)

    @abstractmethod
    def requeued(self, cursor: CursorWrapper) -> int:
        """Once REQUEUE_RESULTS has run: how many it moved, their history rows gone."""

    def rerun(
        self, cursor: CursorWrapper, copies: list[tuple[uuid.UUID, str, int]], now: datetime
    ) -> None:
        """Queue a fresh copy of each result: (result id, the copy's id, max_attempts)."""
        document = [
            {"source": self.json_id(str(source)), "new_id": self.json_id(new_id), "max_attempts": n}
            for source, new_id, n in copies
        ]
        cursor.execute(
            self.RERUN, {"copies": json.dumps(document), "now": self.param_datetime(now)}
        )

    def delete_waiting(self, cursor: CursorWrapper, task_ids: Iterable[uuid.UUID]) -> int:
        """Delete the ready (not running, not blocked) tasks among ``task_ids``."""
        cursor.execute(self.DELETE_WAITING, {"ids": self.param_ids(task_ids)})
        return int(cursor.rowcount)

    def delete_results(self, cursor: CursorWrapper, result_ids: Iterable[uuid.UUID]) -> int:
        cursor.execute(self.DELETE_RESULTS, {"ids": self.param_ids(result_ids)})
        return int(cursor.rowcount)

    @abstractmethod
    def notify(self, cursor: CursorWrapper, queues: Iterable[str]) -> None:
        """Wake the idle workers of ``queues`` when this transaction commits."""

    @abstractmethod
    def notify_finished(self, cursor: CursorWrapper, task_ids: Iterable[str | uuid.UUID]) -> None:
        """Wake the callers of ``wait()`` on ``task_ids`` when this transaction commits."""

    def stuck_children(self, cursor: CursorWrapper, limit: int) -> list[uuid.UUID]:
        cursor.execute(STUCK_CHILDREN, {"limit": limit})
        return [uuid.UUID(_task_id(row[0])) for row in cursor.fetchall()]


def distinct_values(cursor: CursorWrapper, table: str, column: str) -> list[str]:
    """The distinct values of an indexed column (the admin's filters)."""
    quote = cursor.db.ops.quote_name
    scan = loose_index_scan("v", quote(table), quote(column))
    cursor.execute(f"WITH RECURSIVE {scan} SELECT name FROM v WHERE name IS NOT NULL")
    return [row[0] for row in cursor.fetchall()]


def statements_for(connection: Any) -> Statements:
    """The statements for ``connection``'s vendor (a Django connection)."""
    if connection.vendor == "postgresql":
        from .postgres import PostgresStatements

        return PostgresStatements(connection)
    if connection.vendor == "sqlite":
        from .sqlite import SQLiteStatements

        return SQLiteStatements(connection)
    raise NotImplementedError(f"django-tasks-q does not support {connection.vendor}.")
