"""Every statement the database backend runs on its hot paths, per vendor.

The queue lives in two tables (see ``models.py``): ``django_tasks_q_task``
holds waiting and running tasks, ``django_tasks_q_taskresult`` finished ones.
Each method below is one round trip (two on SQLite for ``finish``) and works
on a whole batch, so a worker's database cost grows with batches, not tasks.

Outcome batches travel as one JSON document expanded by the database
(``jsonb_to_recordset`` / ``json_each``): one parameter, any batch size.
"""

import json
import uuid
from datetime import UTC, datetime

from django.utils.dateparse import parse_datetime

from ..contract import ClaimedTask, EnqueueBatch, Outcome

# What a claim hands back, in this order.
CLAIMED_COLUMNS = (
    "id, task_path, queue_name, priority, args, kwargs, attempts, max_attempts, "
    "errors, worker_ids, enqueued_at, started_at, run_after"
)


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


def distinct_values(cursor, table: str, column: str) -> list[str]:
    """The distinct values of an indexed column (the admin's filters)."""
    quote = cursor.db.ops.quote_name
    scan = loose_index_scan("v", quote(table), quote(column))
    cursor.execute(f"WITH RECURSIVE {scan} SELECT name FROM v WHERE name IS NOT NULL")
    return [row[0] for row in cursor.fetchall()]


def _json(value):
    return json.loads(value) if isinstance(value, str) else value


def _datetime(value):
    if isinstance(value, str):
        value = parse_datetime(value)
    if value is not None and value.tzinfo is None:  # SQLite stores naive UTC
        value = value.replace(tzinfo=UTC)
    return value


def _claimed(row, now: datetime) -> ClaimedTask:
    return ClaimedTask(
        id=str(uuid.UUID(str(row[0]))),
        task_path=row[1],
        queue_name=row[2],
        priority=row[3],
        args=_json(row[4]),
        kwargs=_json(row[5]),
        attempts=row[6],
        max_attempts=row[7],
        errors=_json(row[8]),
        worker_ids=_json(row[9]),
        enqueued_at=_datetime(row[10]),
        started_at=_datetime(row[11]),
        last_attempted_at=now,
    )


def _recorded(rows) -> tuple[set[str], list[str]]:
    """FINISH's (id, has_dependents) rows: the ids, and those with dependents."""
    recorded, passed_on = set(), []
    for task_id, has_dependents in rows:
        recorded.add(task_id := str(uuid.UUID(str(task_id))))
        if has_dependents:
            passed_on.append(task_id)
    return recorded, passed_on


def _claim_order(row):
    # RETURNING has no order: restore the claim query's (priority, run_after, id).
    return (-row[3], _datetime(row[12]), str(uuid.UUID(str(row[0]))))


class PostgresQueries:
    # Any number of calls of one task in one statement; the calls' ids and
    # arguments arrive as one JSON document. The NOTIFY wakes idle workers
    # when the transaction commits (never before), once per statement, and
    # PostgreSQL folds repeats of it within a transaction into one.
    INSERT = """
        WITH inserted AS (
            INSERT INTO django_tasks_q_task
                (id, task_path, queue_name, priority, status, args, kwargs,
                 run_after, enqueued_at, attempts, max_attempts, errors, worker_ids,
                 expires_at)
            SELECT c.id, %(task_path)s, %(queue_name)s, %(priority)s, 'READY',
                   c.args, c.kwargs, %(run_after)s, %(now)s, 0, %(max_attempts)s,
                   '[]', '[]', %(expires_at)s
            FROM jsonb_to_recordset(%(calls)s::jsonb) AS c(id uuid, args jsonb, kwargs jsonb)
            RETURNING 1
        )
        SELECT pg_notify('django_tasks_q', %(queue_name)s)
        WHERE %(run_after)s <= %(now)s AND EXISTS (SELECT FROM inserted)
    """

    # The same for calls with unique keys. The constraint taskq_task_unique_key
    # decides, in the INSERT itself, so concurrent enqueues of a key cannot both
    # get in: a call whose key a queued task holds (or an earlier call of this
    # batch took) is skipped. One row back: the ids of the calls queued.
    INSERT_UNIQUE = """
        WITH inserted AS (
            INSERT INTO django_tasks_q_task
                (id, task_path, queue_name, priority, status, args, kwargs,
                 run_after, enqueued_at, attempts, max_attempts, errors, worker_ids,
                 expires_at, unique_key)
            SELECT c.id, %(task_path)s, %(queue_name)s, %(priority)s, 'READY',
                   c.args, c.kwargs, %(run_after)s, %(now)s, 0, %(max_attempts)s,
                   '[]', '[]', %(expires_at)s, c.unique_key
            FROM jsonb_to_recordset(%(calls)s::jsonb)
                AS c(id uuid, args jsonb, kwargs jsonb, unique_key text)
            ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING
            RETURNING id
        )
        SELECT array_agg(id),
               CASE WHEN count(*) > 0 AND %(run_after)s <= %(now)s
                    THEN pg_notify('django_tasks_q', %(queue_name)s) END
        FROM inserted
    """

    # The claim. For each queue it serves, the partial index taskq_task_ready
    # (queue_name, priority DESC, run_after, id) yields that queue's first
    # ``limit`` ready rows in claim order, and the best ``limit`` of them are
    # taken: one short index range per queue, however long the queues are.
    # SKIP LOCKED lets concurrent workers pass over each other's rows instead
    # of queueing behind them; a row locked here but not among the best is
    # free again when the statement's transaction ends. A row past its
    # deadline is never started: EXPIRE records it.
    CLAIM = f"""
        WITH RECURSIVE {{served}}, claimable AS (
            SELECT picked.id FROM served, LATERAL (
                SELECT id, priority, run_after FROM django_tasks_q_task
                WHERE status = 'READY' AND queue_name = served.name
                  AND run_after <= %(now)s
                  AND (expires_at IS NULL OR expires_at > %(now)s)
                ORDER BY priority DESC, run_after, id
                LIMIT %(limit)s
                FOR UPDATE SKIP LOCKED
            ) AS picked
            ORDER BY picked.priority DESC, picked.run_after, picked.id
            LIMIT %(limit)s
        )
        UPDATE django_tasks_q_task AS t
        SET status = 'RUNNING',
            attempts = t.attempts + 1,
            worker_id = %(worker)s,
            worker_ids = t.worker_ids || to_jsonb(%(worker)s::text),
            started_at = COALESCE(t.started_at, %(now)s),
            last_attempted_at = %(now)s,
            lease_expires_at = %(lease_until)s
        FROM claimable {{commit_asynchronously}}
        WHERE t.id = claimable.id
        RETURNING {", ".join(f"t.{c}" for c in CLAIMED_COLUMNS.split(", "))}
    """
    # The queues a claim serves: those the worker names, or every queue with
    # ready tasks, read off the index one name at a time (a loose index scan:
    # a probe per queue, not a pass over the rows).
    SERVED_NAMED = "served(name) AS (SELECT unnest(%(queues)s::text[]))"
    SERVED_ALL = loose_index_scan("served", "django_tasks_q_task", "queue_name", "status = 'READY'")
    # A claim run on its own (autocommit) need not wait for the WAL flush: if
    # a database crash loses it, the task is simply still queued. set_config
    # with is_local lasts until this statement's transaction ends, after its
    # commit: an idle worker starts a task about 0.4 ms sooner here.
    CLAIM_ALONE = ", (SELECT set_config('synchronous_commit', 'off', true)) AS commit_mode"

    # Finished tasks leave the queue and enter the history in one statement.
    # "worker_id = %(worker)s": only rows this worker still holds; a task whose
    # lease ran out and was claimed again is recorded by its new holder.
    # Returns each recorded id, and whether its ending must be passed on
    # (has_dependents: chained tasks or wait() callers; see chains.py).
    FINISH = """
        WITH outcome AS (
            SELECT * FROM jsonb_to_recordset(%(outcomes)s::jsonb) AS o(
                id uuid, status text, return_value jsonb, errors jsonb,
                finished_at timestamptz)
        ), moved AS (
            DELETE FROM django_tasks_q_task AS t USING outcome AS o
            WHERE t.id = o.id AND t.worker_id = %(worker)s
            RETURNING t.*
        ), recorded AS (
            INSERT INTO django_tasks_q_taskresult
                (id, task_path, queue_name, priority, status, args, kwargs,
                 return_value, errors, worker_ids, attempts, enqueued_at, run_after,
                 started_at, last_attempted_at, finished_at)
            SELECT m.id, m.task_path, m.queue_name, m.priority, o.status, m.args,
                   m.kwargs, o.return_value, o.errors, m.worker_ids, m.attempts,
                   m.enqueued_at, m.run_after, m.started_at, m.last_attempted_at,
                   o.finished_at
            FROM moved AS m JOIN outcome AS o ON o.id = m.id
        )
        SELECT id, has_dependents FROM moved
    """

    RETRY = """
        UPDATE django_tasks_q_task AS t
        SET status = 'READY', run_after = o.run_after, errors = o.errors,
            worker_id = NULL, lease_expires_at = NULL
        FROM jsonb_to_recordset(%(outcomes)s::jsonb)
            AS o(id uuid, run_after timestamptz, errors jsonb)
        WHERE t.id = o.id AND t.worker_id = %(worker)s
        RETURNING t.id
    """

    # Undo the claim: the attempt did not happen. Wake other workers for it.
    RELEASE = """
        WITH released AS (
            UPDATE django_tasks_q_task
            SET status = 'READY', worker_id = NULL, lease_expires_at = NULL,
                attempts = attempts - 1,
                worker_ids = worker_ids - (-1),
                started_at = CASE WHEN attempts = 1 THEN NULL ELSE started_at END
            WHERE id = ANY(%(ids)s::uuid[]) AND worker_id = %(worker)s
            RETURNING queue_name
        )
        SELECT pg_notify('django_tasks_q', queue_name) FROM released GROUP BY queue_name
    """

    # The heartbeat: push back the leases of the tasks this worker knows it
    # holds. Not "every row with our worker_id": a claim whose reply was lost
    # (connection cut mid-statement) must expire and be recovered.
    RENEW = """
        UPDATE django_tasks_q_task SET lease_expires_at = %(lease_until)s
        WHERE id = ANY(%(ids)s::uuid[]) AND worker_id = %(worker)s
    """

    # Which of the tasks this worker holds someone asked to abort: primary
    # key probes for the held tasks only, whatever the size of the queue.
    ABORTS_REQUESTED = """
        SELECT id FROM django_tasks_q_task
        WHERE id = ANY(%(ids)s::uuid[]) AND worker_id = %(worker)s
          AND abort_requested_at IS NOT NULL
    """

    # Tasks whose worker stopped renewing (killed, lost power, cut off): the
    # attempt failed with WorkerLost. With attempts left they are ready again
    # (RECOVER); without, they go to the history as failed (ABANDON).
    # SKIP LOCKED: two workers recovering at once split the rows.
    LOST_ERROR = """
        jsonb_build_object(
            'exception_class_path', 'django_tasks_q.exceptions.WorkerLost',
            'traceback', 'django_tasks_q.exceptions.WorkerLost: worker '
                || t.worker_id || ' stopped renewing its lease during attempt '
                || t.attempts || E'\n')
    """
    RECOVER = f"""
        WITH lost AS (
            SELECT id FROM django_tasks_q_task
            WHERE status = 'RUNNING' AND lease_expires_at < %(now)s
              AND attempts < max_attempts
            FOR UPDATE SKIP LOCKED
        ), recovered AS (
            UPDATE django_tasks_q_task AS t
            SET status = 'READY', worker_id = NULL, lease_expires_at = NULL,
                errors = t.errors || jsonb_build_array({LOST_ERROR})
            FROM lost WHERE t.id = lost.id
            RETURNING t.queue_name
        ), notified AS (
            SELECT pg_notify('django_tasks_q', queue_name) FROM recovered GROUP BY queue_name
        )
        SELECT (SELECT count(*) FROM recovered), (SELECT count(*) FROM notified)
    """
    ABANDON = f"""
        WITH lost AS (
            DELETE FROM django_tasks_q_task AS t
            WHERE id IN (
                SELECT id FROM django_tasks_q_task
                WHERE status = 'RUNNING' AND lease_expires_at < %(now)s
                  AND attempts >= max_attempts
                FOR UPDATE SKIP LOCKED
            )
            RETURNING t.*, {LOST_ERROR} AS lost_error
        )
        INSERT INTO django_tasks_q_taskresult
            (id, task_path, queue_name, priority, status, args, kwargs,
             return_value, errors, worker_ids, attempts, enqueued_at, run_after,
             started_at, last_attempted_at, finished_at)
        SELECT id, task_path, queue_name, priority, 'FAILED', args, kwargs, NULL,
               errors || jsonb_build_array(lost_error), worker_ids, attempts,
               enqueued_at, run_after, started_at, last_attempted_at, %(now)s
        FROM lost
    """

    # Expiry: waiting tasks past their deadline go to the history as EXPIRED,
    # a batch at a time, soonest deadline first (index taskq_task_expiry).
    # The claim already passes them over; this keeps them out of its way.
    # SKIP LOCKED: workers expiring at once split the rows.
    EXPIRED_ERROR = """
        jsonb_build_object(
            'exception_class_path', 'django_tasks_q.exceptions.TaskExpired',
            'traceback', 'django_tasks_q.exceptions.TaskExpired: not started by its deadline, '
                || to_char(t.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')
                || E' UTC\n')
    """
    EXPIRE = f"""
        WITH expired AS (
            DELETE FROM django_tasks_q_task AS t
            WHERE id IN (
                SELECT id FROM django_tasks_q_task
                WHERE status = 'READY' AND expires_at IS NOT NULL
                  AND expires_at <= %(now)s
                ORDER BY expires_at
                LIMIT %(limit)s
                FOR UPDATE SKIP LOCKED
            )
            RETURNING t.*, {EXPIRED_ERROR} AS expired_error
        )
        INSERT INTO django_tasks_q_taskresult
            (id, task_path, queue_name, priority, status, args, kwargs,
             return_value, errors, worker_ids, attempts, enqueued_at, run_after,
             started_at, last_attempted_at, finished_at)
        SELECT id, task_path, queue_name, priority, 'EXPIRED', args, kwargs, NULL,
               errors || jsonb_build_array(expired_error), worker_ids, attempts,
               enqueued_at, run_after, started_at, last_attempted_at, %(now)s
        FROM expired
    """

    # Retention: one batch of expired results, oldest first (index
    # taskq_result_finished). SKIP LOCKED: workers pruning at once split it.
    PRUNE = """
        DELETE FROM django_tasks_q_taskresult WHERE id IN (
            SELECT id FROM django_tasks_q_taskresult
            WHERE finished_at < %(before)s
            ORDER BY finished_at LIMIT %(limit)s
            FOR UPDATE SKIP LOCKED
        )
    """

    def __init__(self, connection):
        self.connection = connection

    def commit_asynchronously(self, cursor):
        """This transaction's commit returns before its WAL is flushed to disk."""
        cursor.execute("SET LOCAL synchronous_commit TO OFF")

    # How values are written: as statement parameters, and inside JSON documents.
    def param_id(self, task_id: uuid.UUID):
        return task_id

    def param_datetime(self, value: datetime):
        return value

    def json_id(self, task_id: str) -> str:
        return task_id

    def json_datetime(self, value: datetime) -> str:
        return value.isoformat()

    def insert(self, cursor, batch: EnqueueBatch) -> None:
        """Queue every call of ``batch``."""
        document = [
            {"id": self.json_id(task_id), "args": args, "kwargs": kwargs}
            for task_id, args, kwargs in zip(batch.ids, batch.args, batch.kwargs, strict=True)
        ]
        cursor.execute(self.INSERT, self.insert_params(batch, document))

    def insert_unique(self, cursor, batch: EnqueueBatch, indices: list[int]) -> set[str]:
        """Queue the calls ``indices`` of ``batch`` whose unique key no queued
        task holds; returns the ids of those queued."""
        document = [
            {
                "id": self.json_id(batch.ids[i]),
                "args": batch.args[i],
                "kwargs": batch.kwargs[i],
                "unique_key": batch.unique_keys[i],
            }
            for i in indices
        ]
        cursor.execute(self.INSERT_UNIQUE, self.insert_params(batch, document))
        return self.inserted_ids(cursor)

    def inserted_ids(self, cursor) -> set[str]:
        [(ids, _)] = cursor.fetchall()
        return {str(task_id) for task_id in ids or ()}

    def insert_params(self, batch: EnqueueBatch, document) -> dict:
        task = batch.task
        return {
            "task_path": task.module_path,
            "queue_name": task.queue_name,
            "priority": task.priority,
            "run_after": self.param_datetime(batch.run_after),
            "expires_at": None
            if batch.expires_at is None
            else self.param_datetime(batch.expires_at),
            "now": self.param_datetime(batch.enqueued_at),
            "max_attempts": batch.max_attempts,
            "calls": json.dumps(document),
        }

    def claim_statement(self, cursor, queues, alone) -> tuple[str, dict] | None:
        """The claim, and its parameters but the common ones; None: nothing to claim."""
        if queues is None:
            served, params = self.SERVED_ALL, {}
        else:
            served, params = self.SERVED_NAMED, {"queues": list(queues)}
        asynchronously = self.CLAIM_ALONE if alone else ""
        return self.CLAIM.format(served=served, commit_asynchronously=asynchronously), params

    def claim(self, cursor, queues, limit, worker_id, now, lease_until, *, alone=False):
        """Claim up to ``limit`` ready tasks of ``queues`` (None: every queue).
        ``alone``: the statement is its own transaction, so it may commit
        without waiting for the disk."""
        if (claim := self.claim_statement(cursor, queues, alone)) is None:
            return []
        statement, params = claim
        cursor.execute(
            statement,
            {
                **params,
                "now": self.param_datetime(now),
                "limit": limit,
                "worker": worker_id,
                "lease_until": self.param_datetime(lease_until),
            },
        )
        rows = sorted(cursor.fetchall(), key=_claim_order)
        return [_claimed(row, now) for row in rows]

    def finished_document(self, outcomes):
        return json.dumps(
            [
                {
                    "id": self.json_id(o.claimed.id),
                    "status": o.status,
                    "return_value": o.return_value,
                    "errors": o.errors,
                    "finished_at": self.json_datetime(o.finished_at),
                }
                for o in outcomes
            ]
        )

    def retry_document(self, outcomes):
        return json.dumps(
            [
                {
                    "id": self.json_id(o.claimed.id),
                    "run_after": self.json_datetime(o.retry_at),
                    "errors": o.errors,
                }
                for o in outcomes
            ]
        )

    def finish(self, cursor, outcomes: list[Outcome], worker_id) -> tuple[set[str], list[str]]:
        """Record ``outcomes``; returns the ids recorded, and those among them
        that have dependents."""
        params = {"outcomes": self.finished_document(outcomes), "worker": worker_id}
        cursor.execute(self.FINISH, params)
        return _recorded(cursor.fetchall())

    def retry(self, cursor, outcomes: list[Outcome], worker_id) -> set[str]:
        params = {"outcomes": self.retry_document(outcomes), "worker": worker_id}
        cursor.execute(self.RETRY, params)
        return {str(uuid.UUID(str(row[0]))) for row in cursor.fetchall()}

    def release(self, cursor, task_ids, worker_id):
        cursor.execute(self.RELEASE, {"ids": self.ids_param(task_ids), "worker": worker_id})

    def ids_param(self, task_ids):
        return list(task_ids)

    def renew(self, cursor, task_ids, worker_id, lease_until):
        params = {
            "ids": self.ids_param(task_ids),
            "worker": worker_id,
            "lease_until": self.param_datetime(lease_until),
        }
        cursor.execute(self.RENEW, params)

    def aborts_requested(self, cursor, task_ids, worker_id) -> list[str]:
        cursor.execute(
            self.ABORTS_REQUESTED, {"ids": self.ids_param(task_ids), "worker": worker_id}
        )
        return [str(uuid.UUID(str(row[0]))) for row in cursor.fetchall()]

    def prune(self, cursor, before, limit) -> int:
        cursor.execute(self.PRUNE, {"before": self.param_datetime(before), "limit": limit})
        return cursor.rowcount

    def recover(self, cursor, now) -> int:
        """Requeue or fail tasks whose lease expired; returns how many."""
        params = {"now": self.param_datetime(now)}
        cursor.execute(self.RECOVER, params)
        recovered = cursor.fetchone()[0]
        cursor.execute(self.ABANDON, params)
        return recovered + cursor.rowcount

    def expire(self, cursor, now, limit) -> int:
        """Record up to ``limit`` waiting tasks past their deadline as EXPIRED."""
        cursor.execute(self.EXPIRE, {"now": self.param_datetime(now), "limit": limit})
        return cursor.rowcount


class SQLiteQueries(PostgresQueries):
    """The same statements in SQLite's dialect (3.35+ for RETURNING).

    SQLite has one writer at a time, so the claim needs no SKIP LOCKED: the
    UPDATE holds the write lock while it picks and marks its rows. Django
    keeps UUIDs as 32 hex digits and datetimes as naive UTC text here.
    """

    INSERT = """
        INSERT INTO django_tasks_q_task
            (id, task_path, queue_name, priority, status, args, kwargs,
             run_after, enqueued_at, attempts, max_attempts, errors, worker_ids,
             expires_at)
        SELECT json_extract(c.value, '$.id'), %(task_path)s, %(queue_name)s,
               %(priority)s, 'READY', json_extract(c.value, '$.args'),
               json_extract(c.value, '$.kwargs'), %(run_after)s, %(now)s, 0,
               %(max_attempts)s, '[]', '[]', %(expires_at)s
        FROM json_each(%(calls)s) AS c
    """
    # "WHERE true": without a WHERE, SQLite would parse ON CONFLICT as part
    # of the SELECT's join.
    INSERT_UNIQUE = """
        INSERT INTO django_tasks_q_task
            (id, task_path, queue_name, priority, status, args, kwargs,
             run_after, enqueued_at, attempts, max_attempts, errors, worker_ids,
             expires_at, unique_key)
        SELECT json_extract(c.value, '$.id'), %(task_path)s, %(queue_name)s,
               %(priority)s, 'READY', json_extract(c.value, '$.args'),
               json_extract(c.value, '$.kwargs'), %(run_after)s, %(now)s, 0,
               %(max_attempts)s, '[]', '[]', %(expires_at)s,
               json_extract(c.value, '$.unique_key')
        FROM json_each(%(calls)s) AS c WHERE true
        ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING
        RETURNING id
    """

    CLAIM = f"""
        UPDATE django_tasks_q_task
        SET status = 'RUNNING',
            attempts = attempts + 1,
            worker_id = %(worker)s,
            worker_ids = json_insert(worker_ids, '$[#]', %(worker)s),
            started_at = COALESCE(started_at, %(now)s),
            last_attempted_at = %(now)s,
            lease_expires_at = %(lease_until)s
        WHERE id IN (
            SELECT id FROM ({{heads}}) ORDER BY priority DESC, run_after, id LIMIT %(limit)s
        )
        RETURNING {CLAIMED_COLUMNS}
    """
    # The first ``limit`` ready rows of one queue, in claim order, read off the
    # index taskq_task_ready with no sort (SQLite has no LATERAL: one of these
    # per served queue, joined by UNION ALL).
    HEAD = """
        SELECT * FROM (
            SELECT id, priority, run_after FROM django_tasks_q_task
            WHERE status = 'READY' AND queue_name = %(queue_{index})s
              AND run_after <= %(now)s
              AND (expires_at IS NULL OR expires_at > %(now)s)
            ORDER BY priority DESC, run_after, id
            LIMIT %(limit)s
        )
    """
    # Every queue with ready tasks, one index probe per queue.
    READY_QUEUES = f"""
        WITH RECURSIVE {PostgresQueries.SERVED_ALL}
        SELECT name FROM served WHERE name IS NOT NULL
    """

    # Two statements, run in one transaction by the caller: SQLite cannot
    # feed a DELETE ... RETURNING into an INSERT.
    FINISH = """
        INSERT INTO django_tasks_q_taskresult
            (id, task_path, queue_name, priority, status, args, kwargs,
             return_value, errors, worker_ids, attempts, enqueued_at, run_after,
             started_at, last_attempted_at, finished_at)
        SELECT t.id, t.task_path, t.queue_name, t.priority,
               json_extract(o.value, '$.status'), t.args, t.kwargs,
               json_extract(o.value, '$.return_value'),
               json_extract(o.value, '$.errors'), t.worker_ids, t.attempts,
               t.enqueued_at, t.run_after, t.started_at, t.last_attempted_at,
               json_extract(o.value, '$.finished_at')
        FROM json_each(%(outcomes)s) AS o
        JOIN django_tasks_q_task AS t ON t.id = json_extract(o.value, '$.id')
        WHERE t.worker_id = %(worker)s
    """
    FINISH_DELETE = """
        DELETE FROM django_tasks_q_task
        WHERE id IN (SELECT json_extract(value, '$.id') FROM json_each(%(outcomes)s))
          AND worker_id = %(worker)s
        RETURNING id, has_dependents
    """

    RETRY = """
        UPDATE django_tasks_q_task
        SET status = 'READY', run_after = json_extract(o.value, '$.run_after'),
            errors = json_extract(o.value, '$.errors'),
            worker_id = NULL, lease_expires_at = NULL
        FROM json_each(%(outcomes)s) AS o
        WHERE django_tasks_q_task.id = json_extract(o.value, '$.id')
          AND django_tasks_q_task.worker_id = %(worker)s
        RETURNING id
    """

    RELEASE = """
        UPDATE django_tasks_q_task
        SET status = 'READY', worker_id = NULL, lease_expires_at = NULL,
            attempts = attempts - 1,
            worker_ids = json_remove(worker_ids, '$[#-1]'),
            started_at = CASE WHEN attempts = 1 THEN NULL ELSE started_at END
        WHERE id IN (SELECT value FROM json_each(%(ids)s)) AND worker_id = %(worker)s
    """

    RENEW = """
        UPDATE django_tasks_q_task SET lease_expires_at = %(lease_until)s
        WHERE id IN (SELECT value FROM json_each(%(ids)s)) AND worker_id = %(worker)s
    """

    ABORTS_REQUESTED = """
        SELECT id FROM django_tasks_q_task
        WHERE id IN (SELECT value FROM json_each(%(ids)s)) AND worker_id = %(worker)s
          AND abort_requested_at IS NOT NULL
    """

    LOST_ERROR = """
        json_object(
            'exception_class_path', 'django_tasks_q.exceptions.WorkerLost',
            'traceback', 'django_tasks_q.exceptions.WorkerLost: worker '
                || worker_id || ' stopped renewing its lease during attempt '
                || attempts || char(10))
    """
    RECOVER = f"""
        UPDATE django_tasks_q_task
        SET status = 'READY', worker_id = NULL, lease_expires_at = NULL,
            errors = json_insert(errors, '$[#]', {LOST_ERROR})
        WHERE status = 'RUNNING' AND lease_expires_at < %(now)s
          AND attempts < max_attempts
    """
    # Two statements in the caller's transaction, as for FINISH.
    ABANDON = f"""
        INSERT INTO django_tasks_q_taskresult
            (id, task_path, queue_name, priority, status, args, kwargs,
             return_value, errors, worker_ids, attempts, enqueued_at, run_after,
             started_at, last_attempted_at, finished_at)
        SELECT id, task_path, queue_name, priority, 'FAILED', args, kwargs, NULL,
               json_insert(errors, '$[#]', {LOST_ERROR}), worker_ids, attempts,
               enqueued_at, run_after, started_at, last_attempted_at, %(now)s
        FROM django_tasks_q_task
        WHERE status = 'RUNNING' AND lease_expires_at < %(now)s
          AND attempts >= max_attempts
    """
    EXPIRED_ERROR = """
        json_object(
            'exception_class_path', 'django_tasks_q.exceptions.TaskExpired',
            'traceback', 'django_tasks_q.exceptions.TaskExpired: not started by its deadline, '
                || expires_at || ' UTC' || char(10))
    """
    # Copy, then delete what was copied (EXPIRE_DELETE), in one transaction.
    EXPIRE = f"""
        INSERT INTO django_tasks_q_taskresult
            (id, task_path, queue_name, priority, status, args, kwargs,
             return_value, errors, worker_ids, attempts, enqueued_at, run_after,
             started_at, last_attempted_at, finished_at)
        SELECT id, task_path, queue_name, priority, 'EXPIRED', args, kwargs, NULL,
               json_insert(errors, '$[#]', {EXPIRED_ERROR}), worker_ids, attempts,
               enqueued_at, run_after, started_at, last_attempted_at, %(now)s
        FROM django_tasks_q_task
        WHERE status = 'READY' AND expires_at IS NOT NULL AND expires_at <= %(now)s
        ORDER BY expires_at LIMIT %(limit)s
        RETURNING id
    """
    EXPIRE_DELETE = """
        DELETE FROM django_tasks_q_task WHERE id IN (SELECT value FROM json_each(%(ids)s))
    """
    PRUNE = """
        DELETE FROM django_tasks_q_taskresult WHERE id IN (
            SELECT id FROM django_tasks_q_taskresult
            WHERE finished_at < %(before)s
            ORDER BY finished_at LIMIT %(limit)s
        )
    """
    ABANDON_DELETE = """
        DELETE FROM django_tasks_q_task
        WHERE status = 'RUNNING' AND lease_expires_at < %(now)s
          AND attempts >= max_attempts
    """

    def commit_asynchronously(self, cursor):
        pass  # SQLite's durability is the database's journal_mode/synchronous

    def param_id(self, task_id: uuid.UUID) -> str:
        return task_id.hex

    def param_datetime(self, value: datetime) -> str:
        return self.connection.ops.adapt_datetimefield_value(value)

    def json_id(self, task_id: str) -> str:
        return uuid.UUID(task_id).hex

    json_datetime = param_datetime

    def claim_statement(self, cursor, queues, alone) -> tuple[str, dict] | None:
        # ``alone`` changes nothing: SQLite's synchronous PRAGMA decides the flush.
        if queues is None:
            cursor.execute(self.READY_QUEUES)
            queues = [name for (name,) in cursor.fetchall()]
        if not queues:
            return None
        heads = " UNION ALL ".join(self.HEAD.format(index=i) for i in range(len(queues)))
        return self.CLAIM.format(heads=heads), {f"queue_{i}": q for i, q in enumerate(queues)}

    def finished_document(self, outcomes):
        # JSON values nested as text: json_extract() would unwrap a string
        # return value and turn true into 1.
        return json.dumps(
            [
                {
                    "id": self.json_id(o.claimed.id),
                    "status": o.status,
                    "return_value": json.dumps(o.return_value),
                    "errors": json.dumps(o.errors),
                    "finished_at": self.json_datetime(o.finished_at),
                }
                for o in outcomes
            ]
        )

    def retry_document(self, outcomes):
        return json.dumps(
            [
                {
                    "id": self.json_id(o.claimed.id),
                    "run_after": self.json_datetime(o.retry_at),
                    "errors": json.dumps(o.errors),
                }
                for o in outcomes
            ]
        )

    def finish(self, cursor, outcomes, worker_id):
        params = {"outcomes": self.finished_document(outcomes), "worker": worker_id}
        cursor.execute(self.FINISH, params)
        cursor.execute(self.FINISH_DELETE, params)  # the rows just copied
        return _recorded(cursor.fetchall())

    def ids_param(self, task_ids):
        return json.dumps([self.json_id(i) for i in task_ids])

    def inserted_ids(self, cursor) -> set[str]:
        return {str(uuid.UUID(row[0])) for row in cursor.fetchall()}

    def expire(self, cursor, now, limit) -> int:
        cursor.execute(self.EXPIRE, {"now": self.param_datetime(now), "limit": limit})
        expired = [row[0] for row in cursor.fetchall()]
        cursor.execute(self.EXPIRE_DELETE, {"ids": json.dumps(expired)})
        return len(expired)

    def recover(self, cursor, now) -> int:
        params = {"now": self.param_datetime(now)}
        cursor.execute(self.RECOVER, params)
        recovered = cursor.rowcount
        cursor.execute(self.ABANDON, params)
        abandoned = cursor.rowcount
        cursor.execute(self.ABANDON_DELETE, params)
        return recovered + abandoned


def queries_for(connection):
    if connection.vendor == "postgresql":
        return PostgresQueries(connection)
    if connection.vendor == "sqlite":
        return SQLiteQueries(connection)
    raise NotImplementedError(f"django-tasks-q does not support {connection.vendor}.")
