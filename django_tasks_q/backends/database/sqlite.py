"""The store's statements in SQLite's dialect (3.35+ for RETURNING).

SQLite has one writer at a time, so the claim needs no SKIP LOCKED: the
UPDATE holds the write lock while it picks and marks its rows. Workers learn
of new tasks by polling (nothing here notifies). Django keeps UUIDs as 32 hex
digits and datetimes as naive UTC text here; JSON values nested in a document
travel as JSON text, since ``json_extract`` would unwrap a string and turn
``true`` into 1.
"""

import json
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db.backends.utils import CursorWrapper

from ...exceptions import TASK_EXPIRED, WORKER_LOST
from .statements import (
    CLAIMED_COLUMNS,
    HISTORY_COLUMNS,
    LIMITED_CLAIMABLE,
    MARK_LIMITED,
    QUEUED_COLUMNS,
    RATE_STARTS,
    REQUEUE_FROM,
    UNSUCCESSFUL,
    Ended,
    Statements,
    _task_id,
    loose_index_scan,
)

# Any number of calls of one task in one statement ("WHERE true": without a
# WHERE, SQLite would parse an ON CONFLICT after it as part of the join).
_INSERT = f"""
    INSERT INTO django_tasks_q_task ({QUEUED_COLUMNS}{{key_column}})
    SELECT json_extract(c.value, '$.id'), %(task_path)s, %(queue_name)s, %(priority)s,
           'READY', json_extract(c.value, '$.args'), json_extract(c.value, '$.kwargs'),
           %(run_after)s, %(now)s, 0, %(max_attempts)s, '[]', '[]', %(expires_at)s,
           %(group_id)s, %(trace_context)s{{key}}
    FROM json_each(%(calls)s) AS c WHERE true
"""


def _error(path: str, message: str) -> str:
    """A stored error as a JSON object built by SQLite; ``message`` is SQL."""
    return (
        f"json_object('exception_class_path', '{path}', "
        f"'traceback', '{path}: ' || {message} || char(10))"
    )


class SQLiteStatements(Statements):
    vendor = "sqlite"

    def is_missing_table(self, error: Exception) -> bool:
        return str(error).startswith("no such table: django_tasks_q_")

    INSERT = _INSERT.format(key_column="", key="")
    INSERT_UNIQUE = f"""
        {_INSERT.format(key_column=", unique_key", key=", json_extract(c.value, '$.unique_key')")}
        ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING
        RETURNING id
    """

    # As on PostgreSQL: the first ``run_now`` start, the rest are claimed ahead.
    CLAIM = f"""
        UPDATE django_tasks_q_task
        SET status = 'RUNNING',
            claimed_ahead = c.ahead,
            attempts = attempts + (NOT c.ahead),
            worker_id = %(worker)s,
            worker_ids = CASE WHEN c.ahead THEN worker_ids
                              ELSE json_insert(worker_ids, '$[#]', %(worker)s) END,
            started_at = CASE WHEN c.ahead THEN started_at
                              ELSE COALESCE(started_at, %(now)s) END,
            last_attempted_at = CASE WHEN c.ahead THEN last_attempted_at ELSE %(now)s END,
            lease_expires_at = %(lease_until)s
        FROM ({{claimable}}) AS c
        WHERE django_tasks_q_task.id = c.id
        RETURNING {CLAIMED_COLUMNS}
    """
    # The same, also saying beside each row whether a limited task is due
    # ({limited_due}); a claim that takes nothing says nothing.
    CLAIM_LOOKING = CLAIM.replace(
        f"RETURNING {CLAIMED_COLUMNS}", f"RETURNING {CLAIMED_COLUMNS}, {{limited_due}}"
    )
    # The first ``run_now`` in claim order start; the rest are claimed ahead.
    CLAIMABLE = """
        SELECT id, row_number() OVER (ORDER BY priority DESC, run_after, id)
                   > %(run_now)s AND NOT lost_ahead AS ahead
        FROM ({heads}) ORDER BY priority DESC, run_after, id LIMIT %(limit)s
    """
    START = """
        UPDATE django_tasks_q_task
        SET claimed_ahead = false,
            attempts = attempts + 1,
            worker_ids = json_insert(worker_ids, '$[#]', %(worker)s),
            started_at = COALESCE(started_at, json_extract(s.value, '$.at')),
            last_attempted_at = json_extract(s.value, '$.at')
        FROM json_each(%(started)s) AS s
        WHERE django_tasks_q_task.id = json_extract(s.value, '$.id')
          AND worker_id = %(worker)s AND claimed_ahead
    """
    # The first ``limit`` ready rows of one queue, in claim order, read off the
    # index taskq_task_ready with no sort (SQLite has no LATERAL: one of these
    # per served queue, joined by UNION ALL).
    HEAD = """
        SELECT * FROM (
            SELECT id, priority, run_after, lost_ahead FROM django_tasks_q_task
            WHERE status = 'READY' AND queue_name = %(queue_{index})s
              AND run_after <= %(now)s
              AND (expires_at IS NULL OR expires_at > %(now)s)
              AND limit_key IS NULL
            ORDER BY priority DESC, run_after, id
            LIMIT %(limit)s
        )
    """
    # Every queue with ready tasks, one index probe per queue.
    READY_QUEUES = f"""
        WITH RECURSIVE
        {loose_index_scan("served", "django_tasks_q_task", "queue_name", "status = 'READY'")}
        SELECT name FROM served WHERE name IS NOT NULL
    """

    # The one way out of the queue, as PostgreSQL's END, in two statements in
    # the caller's transaction (SQLite cannot feed a DELETE ... RETURNING into
    # an INSERT): copy what ``ending`` names, then delete what was copied.
    END = f"""
        INSERT INTO django_tasks_q_taskresult ({HISTORY_COLUMNS})
        SELECT t.id, t.task_path, t.queue_name, t.priority, e.status, t.args, t.kwargs,
               e.return_value,
               CASE WHEN e.error IS NULL THEN t.errors
                    ELSE json_insert(t.errors, '$[#]', json(e.error)) END,
               t.worker_ids, t.attempts, t.enqueued_at, t.run_after, t.started_at,
               t.last_attempted_at, e.finished_at, t.group_id
        FROM ({{ending}}) AS e JOIN django_tasks_q_task AS t ON t.id = e.id
        WHERE {{guard}}
        RETURNING id
    """
    DELETE_ENDED = """
        DELETE FROM django_tasks_q_task WHERE id IN (SELECT value FROM json_each(%(ids)s))
        RETURNING id, has_dependents
    """
    ENDINGS = """
        SELECT json_extract(value, '$.id') AS id, json_extract(value, '$.status') AS status,
               json_extract(value, '$.return_value') AS return_value,
               json_extract(value, '$.error') AS error,
               json_extract(value, '$.finished_at') AS finished_at
        FROM json_each(%(endings)s)
    """

    LOST_ERROR = _error(
        WORKER_LOST,
        "'worker ' || worker_id || ' stopped renewing its lease during attempt ' || attempts",
    )
    # As on PostgreSQL: a rescue within crash_retries grows max_attempts by
    # one; a task claimed ahead is ready again as it was.
    RESCUED = f"""
        ((SELECT count(*) FROM json_each(errors)
          WHERE json_extract(value, '$.exception_class_path') = '{WORKER_LOST}')
         < %(crash_retries)s)
    """
    RECOVER = f"""
        UPDATE django_tasks_q_task
        SET status = 'READY', worker_id = NULL, lease_expires_at = NULL,
            claimed_ahead = false, lost_ahead = lost_ahead OR claimed_ahead,
            errors = CASE WHEN claimed_ahead THEN errors
                          ELSE json_insert(errors, '$[#]', {LOST_ERROR}) END,
            max_attempts = max_attempts + (NOT claimed_ahead AND {RESCUED})
        WHERE status = 'RUNNING' AND lease_expires_at < %(now)s
          AND (claimed_ahead OR attempts < max_attempts OR {RESCUED})
    """
    ABANDONED = f"""
        SELECT id, 'FAILED' AS status, NULL AS return_value, {LOST_ERROR} AS error,
               %(now)s AS finished_at
        FROM django_tasks_q_task
        WHERE status = 'RUNNING' AND lease_expires_at < %(now)s
          AND attempts >= max_attempts AND NOT {RESCUED}
    """
    EXPIRED = f"""
        SELECT id, 'EXPIRED' AS status, NULL AS return_value,
               {_error(TASK_EXPIRED, "'not started by its deadline, ' || expires_at || ' UTC'")}
                   AS error,
               %(now)s AS finished_at
        FROM django_tasks_q_task
        WHERE status = 'READY' AND expires_at IS NOT NULL AND expires_at <= %(now)s
        ORDER BY expires_at LIMIT %(limit)s
    """

    RETRY = """
        UPDATE django_tasks_q_task
        SET status = 'READY', run_after = json_extract(o.value, '$.run_after'),
            errors = json_extract(o.value, '$.errors'),
            max_attempts = json_extract(o.value, '$.max_attempts'),
            worker_id = NULL, lease_expires_at = NULL
        FROM json_each(%(outcomes)s) AS o
        WHERE django_tasks_q_task.id = json_extract(o.value, '$.id')
          AND django_tasks_q_task.worker_id = %(worker)s
        RETURNING id
    """
    RELEASE = """
        UPDATE django_tasks_q_task
        SET status = 'READY', worker_id = NULL, lease_expires_at = NULL,
            claimed_ahead = false,
            attempts = attempts - (NOT claimed_ahead),
            worker_ids = CASE WHEN claimed_ahead THEN worker_ids
                              ELSE json_remove(worker_ids, '$[#-1]') END,
            started_at = CASE WHEN NOT claimed_ahead AND attempts = 1 THEN NULL
                              ELSE started_at END
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
    MARK_ABORTS = """
        UPDATE django_tasks_q_task
        SET abort_requested_at = COALESCE(abort_requested_at, %(now)s)
        WHERE status = 'RUNNING' AND id IN (SELECT value FROM json_each(%(ids)s))
    """
    PRUNE = """
        DELETE FROM django_tasks_q_taskresult WHERE id IN (
            SELECT id FROM django_tasks_q_taskresult
            WHERE finished_at < %(before)s
            ORDER BY finished_at LIMIT %(limit)s
        )
    """
    # As PostgreSQL's REQUEUE_RESULTS, copied then deleted.
    REQUEUE_RESULTS = f"""
        {REQUEUE_FROM.format(source="django_tasks_q_taskresult")}
        WHERE id IN (SELECT value FROM json_each(%(ids)s)) AND status IN {UNSUCCESSFUL}
        RETURNING id
    """
    DELETE_REQUEUED = """
        DELETE FROM django_tasks_q_taskresult WHERE id IN (SELECT value FROM json_each(%(ids)s))
    """
    RERUN = """
        INSERT INTO django_tasks_q_task
            (id, task_path, queue_name, priority, status, args, kwargs, run_after,
             enqueued_at, attempts, max_attempts, errors, worker_ids)
        SELECT json_extract(c.value, '$.new_id'), r.task_path, r.queue_name, r.priority,
               'READY', r.args, r.kwargs, %(now)s, %(now)s, 0,
               json_extract(c.value, '$.max_attempts'), '[]', '[]'
        FROM json_each(%(copies)s) AS c
        JOIN django_tasks_q_taskresult AS r ON r.id = json_extract(c.value, '$.source')
    """
    DELETE_WAITING = """
        DELETE FROM django_tasks_q_task
        WHERE id IN (SELECT value FROM json_each(%(ids)s)) AND status = 'READY'
    """
    DELETE_RESULTS = """
        DELETE FROM django_tasks_q_taskresult WHERE id IN (SELECT value FROM json_each(%(ids)s))
    """

    def param_datetime(self, value: datetime) -> str:
        return str(self.connection.ops.adapt_datetimefield_value(value))

    def param_ids(self, task_ids: Iterable[str | uuid.UUID]) -> str:
        return json.dumps([self.json_id(str(task_id)) for task_id in task_ids])

    def param_queues(self, queues: list[str]) -> str:
        return json.dumps(queues)

    def json_id(self, task_id: str) -> str:
        return uuid.UUID(task_id).hex

    json_datetime = param_datetime

    def json_value(self, value: Any) -> str:
        return json.dumps(value)

    def claim_statement(
        self,
        cursor: CursorWrapper,
        queues: list[str] | None,
        alone: bool,
        limited_queues: list[str],
        limited_due: str | None,
    ) -> tuple[str, dict[str, Any]] | None:
        # ``alone`` changes nothing: SQLite's synchronous PRAGMA decides the flush.
        if queues is None:
            cursor.execute(self.READY_QUEUES)
            queues = [name for (name,) in cursor.fetchall()]
        queues = [name for name in queues if name not in limited_queues]
        if not queues:
            return None
        heads = " UNION ALL ".join(self.HEAD.format(index=i) for i in range(len(queues)))
        claimable = self.CLAIMABLE.format(heads=heads)
        if limited_due is None:
            statement = self.CLAIM.format(claimable=claimable)
        else:
            statement = self.CLAIM_LOOKING.format(claimable=claimable, limited_due=limited_due)
        return statement, {f"queue_{i}": q for i, q in enumerate(queues)}

    # -- limits (see LIMITED_CLAIMABLE) ---------------------------------------------

    QUEUE_LIMITS = """
        SELECT json_extract(value, '$.name') AS name,
               json_extract(value, '$.concurrency') AS concurrency,
               json_extract(value, '$.rate') AS rate, json_extract(value, '$.period') AS period
        FROM json_each(%(queue_limits)s)
    """
    SERVED_IN = "t.queue_name IN (SELECT value FROM json_each(%(served_queues)s))"
    LIMITED_QUEUE = "t.queue_name IN (SELECT value FROM json_each(%(limited_queues)s))"
    CLAIMABLE_LIMITED = f"""
        WITH {
        LIMITED_CLAIMABLE.format(
            queue_limits="{queue_limits}", served="{served}", least="min", lock=""
        )
    }
        SELECT id, ahead FROM claimable
    """
    # SQLite cannot write in a CTE: the starts are counted once the claim has
    # run, in its transaction (which holds the write lock).
    COUNT_STARTS = f"""
        WITH queue_limits AS ({{queue_limits}})
        INSERT INTO django_tasks_q_ratelimitstart (key, rate_limit, expires_at)
        SELECT * FROM ({RATE_STARTS.format(claimed="(SELECT value AS id FROM json_each(%(ids)s))")})
    """
    FORGET_STARTS = "DELETE FROM django_tasks_q_ratelimitstart WHERE expires_at <= %(epoch)s"
    MARK_LIMITED = MARK_LIMITED.format(
        key="json_extract(c.value, '$.key')",
        calls="json_each(%(calls)s) AS c",
        id="json_extract(c.value, '$.id')",
    )

    # Any write statement takes SQLite's write lock, held until the transaction ends.
    LOCK_LIMITED_CLAIMS = "DELETE FROM django_tasks_q_ratelimitstart WHERE 0"

    def claim_limited_statement(self, queues: list[str] | None) -> str:
        served = "TRUE" if queues is None else self.SERVED_IN
        claimable = self.CLAIMABLE_LIMITED.format(queue_limits=self.QUEUE_LIMITS, served=served)
        return self.CLAIM.format(claimable=claimable)

    def count_starts(self, cursor: CursorWrapper, task_ids: list[str], params: dict) -> None:
        if task_ids:
            ids = json.dumps([self.json_id(task_id) for task_id in task_ids])
            statement = self.COUNT_STARTS.format(queue_limits=self.QUEUE_LIMITS)
            cursor.execute(statement, {**params, "ids": ids})
        cursor.execute(self.FORGET_STARTS, params)

    def commit_asynchronously(self, cursor: CursorWrapper) -> None:
        pass  # SQLite's durability is the database's journal_mode and synchronous

    def notify(self, cursor: CursorWrapper, queues: Iterable[str]) -> None:
        pass  # SQLite workers poll

    def notify_finished(self, cursor: CursorWrapper, task_ids: Iterable[str | uuid.UUID]) -> None:
        pass  # wait() polls on SQLite

    def inserted_ids(self, cursor: CursorWrapper) -> set[str]:
        return {_task_id(row[0]) for row in cursor.fetchall()}

    def counted(self, cursor: CursorWrapper) -> int:
        return int(cursor.rowcount)

    # END and REQUEUE_RESULTS copy; the moved rows are deleted by a second statement.
    def ended(self, cursor: CursorWrapper) -> Ended:
        copied = [row[0] for row in cursor.fetchall()]
        if not copied:
            return Ended()
        cursor.execute(self.DELETE_ENDED, {"ids": json.dumps(copied)})
        return Ended(
            (_task_id(task_id), bool(dependents)) for task_id, dependents in cursor.fetchall()
        )

    def requeued(self, cursor: CursorWrapper) -> int:
        requeued = [row[0] for row in cursor.fetchall()]
        if requeued:
            cursor.execute(self.DELETE_REQUEUED, {"ids": json.dumps(requeued)})
        return len(requeued)
