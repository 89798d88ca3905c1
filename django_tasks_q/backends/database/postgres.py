"""The store's statements in PostgreSQL.

Workers claim with ``FOR UPDATE SKIP LOCKED``, so concurrent workers pass
over each other's rows instead of queueing behind them; operators' and the
sweeps' statements skip locked rows the same way. Anything that makes tasks
due sends ``pg_notify`` in its own transaction, so idle workers wake when,
and only if, it commits (see listeners.py).
"""

import uuid
from collections.abc import Iterable
from typing import Any

from django.db.backends.utils import CursorWrapper

from ...exceptions import TASK_EXPIRED, WORKER_LOST
from .statements import (
    ABORT_CHANNEL,
    CLAIMED_COLUMNS,
    HISTORY_COLUMNS,
    LIMITED_CLAIMABLE,
    MARK_LIMITED,
    QUEUED_COLUMNS,
    RATE_STARTS,
    REQUEUE_FROM,
    UNSUCCESSFUL,
    WAKE_CHANNEL,
    Ended,
    Statements,
    _task_id,
    loose_index_scan,
)

# Where a wait() caller is told that tasks it waits for have ended (see
# result_listener.py), a comma-separated list of ids per notification.
FINISHED_CHANNEL = "django_tasks_q_finished"
IDS_PER_NOTIFICATION = 200  # 37 bytes each: well under NOTIFY's 8000-byte payload limit

# Any number of calls of one task in one statement; the calls' ids and
# arguments arrive as one JSON document.
_INSERT = f"""
    INSERT INTO django_tasks_q_task ({QUEUED_COLUMNS}{{key_column}})
    SELECT c.id, %(task_path)s, %(queue_name)s, %(priority)s, 'READY', c.args, c.kwargs,
           %(run_after)s, %(now)s, 0, %(max_attempts)s, '[]', '[]', %(expires_at)s,
           %(group_id)s::uuid, %(trace_context)s::jsonb{{key}}
    FROM jsonb_to_recordset(%(calls)s::jsonb) AS c(id uuid, args jsonb, kwargs jsonb{{key_type}})
"""


class PostgresStatements(Statements):
    vendor = "postgresql"

    # The NOTIFY wakes idle workers when the transaction commits (never
    # before), once per statement, and PostgreSQL folds repeats of it within
    # a transaction into one.
    INSERT = f"""
        WITH inserted AS ({_INSERT.format(key_column="", key="", key_type="")} RETURNING 1)
        SELECT pg_notify('{WAKE_CHANNEL}', %(queue_name)s)
        WHERE %(due)s AND EXISTS (SELECT FROM inserted)
    """

    # The same for calls with unique keys. The constraint taskq_task_unique_key
    # decides, in the INSERT itself, so concurrent enqueues of a key cannot both
    # get in: a call whose key a queued task holds (or an earlier call of this
    # batch took) is skipped. One row back: the ids of the calls queued.
    INSERT_UNIQUE = f"""
        WITH inserted AS (
            {
        _INSERT.format(
            key_column=", unique_key", key=", c.unique_key", key_type=", unique_key text"
        )
    }
            ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING
            RETURNING id
        )
        SELECT array_agg(id),
               CASE WHEN count(*) > 0 AND %(due)s
                    THEN pg_notify('{WAKE_CHANNEL}', %(queue_name)s) END
        FROM inserted
    """

    # The claim. For each queue it serves, the partial index taskq_task_ready
    # (queue_name, priority DESC, run_after, id) yields that queue's first
    # ``limit`` ready rows in claim order, and the best ``limit`` of them are
    # taken: one short index range per queue, however long the queues are.
    # SKIP LOCKED lets concurrent workers pass over each other's rows instead
    # of queueing behind them; a row locked here but not among the best is
    # free again when the statement's transaction ends. A row past its
    # deadline is never started: EXPIRED ends it. The first ``run_now`` in
    # claim order start (an attempt); the rest are claimed ahead (see
    # statements.py, "Claimed ahead").
    #
    # Limited tasks are not taken here but by the limited claim (CLAIMABLE_LIMITED).
    CLAIMABLE = """{served}, claimable AS (
            SELECT picked.id,
                   row_number() OVER (ORDER BY picked.priority DESC, picked.run_after, picked.id)
                       > %(run_now)s AND NOT picked.lost_ahead AS ahead
            FROM served, LATERAL (
                SELECT id, priority, run_after, lost_ahead FROM django_tasks_q_task
                WHERE status = 'READY' AND queue_name = served.name
                  AND run_after <= %(now)s
                  AND (expires_at IS NULL OR expires_at > %(now)s)
                  AND limit_key IS NULL
                ORDER BY priority DESC, run_after, id
                LIMIT %(limit)s
                FOR UPDATE SKIP LOCKED
            ) AS picked
            ORDER BY picked.priority DESC, picked.run_after, picked.id
            LIMIT %(limit)s
        )"""
    UPDATE_CLAIMED = f"""
        UPDATE django_tasks_q_task AS t
        SET status = 'RUNNING',
            claimed_ahead = claimable.ahead,
            attempts = t.attempts + (NOT claimable.ahead)::int,
            worker_id = %(worker)s,
            worker_ids = CASE WHEN claimable.ahead THEN t.worker_ids
                              ELSE t.worker_ids || to_jsonb(%(worker)s::text) END,
            started_at = CASE WHEN claimable.ahead THEN t.started_at
                              ELSE COALESCE(t.started_at, %(now)s) END,
            last_attempted_at = CASE WHEN claimable.ahead THEN t.last_attempted_at
                                     ELSE %(now)s END,
            lease_expires_at = %(lease_until)s
        FROM claimable {{commit_asynchronously}}
        WHERE t.id = claimable.id
        RETURNING {", ".join(f"t.{c}" for c in CLAIMED_COLUMNS.split(", "))}
    """
    CLAIM = f"WITH RECURSIVE {{claimable}} {UPDATE_CLAIMED}"
    # The same, also saying whether a limited task is due ({limited_due}):
    # beside each row, or in one row of NULLs if it took nothing, so an idle
    # worker's claim stays one round trip.
    CLAIM_LOOKING = f"""
        WITH RECURSIVE {{claimable}}, claimed AS ({UPDATE_CLAIMED})
        SELECT claimed.*, look.due
        FROM (SELECT {{limited_due}} AS due) AS look LEFT JOIN claimed ON true
    """
    # The worker has started tasks it claimed ahead, each at its own time:
    # as the claim starts the others (see statements.py, "Claimed ahead").
    START = """
        UPDATE django_tasks_q_task AS t
        SET claimed_ahead = false,
            attempts = t.attempts + 1,
            worker_ids = t.worker_ids || to_jsonb(%(worker)s::text),
            started_at = COALESCE(t.started_at, s.at),
            last_attempted_at = s.at
        FROM jsonb_to_recordset(%(started)s::jsonb) AS s(id uuid, at timestamptz)
        WHERE t.id = s.id AND t.worker_id = %(worker)s AND t.claimed_ahead
    """
    # The queues a claim serves: those the worker names, or every queue with
    # ready tasks, read off the index (a probe per queue, not a pass over rows).
    SERVED_NAMED = "served(name) AS (SELECT unnest(%(queues)s::text[]))"
    SERVED_ALL = loose_index_scan("served", "django_tasks_q_task", "queue_name", "status = 'READY'")
    # ... but those with queue limits, which the limited claim serves.
    SERVED_ALL_UNLIMITED = f"""{
        loose_index_scan("ready", "django_tasks_q_task", "queue_name", "status = 'READY'")
    }, served(name) AS (SELECT name FROM ready WHERE name <> ALL(%(limited_queues)s::text[]))"""
    # A claim run on its own (autocommit) need not wait for the WAL flush: if
    # a database crash loses it, the task is simply still queued. set_config
    # with is_local lasts until this statement's transaction ends, after its
    # commit: an idle worker starts a task about 0.4 ms sooner here.
    CLAIM_ALONE = ", (SELECT set_config('synchronous_commit', 'off', true)) AS commit_mode"

    # The one way out of the queue: the rows ``ending`` names leave the queue
    # and enter the history in one statement, with the status, return value
    # and finishing time the ending gives them, and its error (if any) after
    # their own. Returns each moved id, and whether its ending must be passed
    # on (has_dependents: blocked tasks or wait() callers; see chains.py).
    END = f"""
        WITH ending AS ({{ending}}), moved AS (
            DELETE FROM django_tasks_q_task AS t USING ending AS e
            WHERE t.id = e.id AND {{guard}}
            RETURNING t.*, e.status AS final_status, e.return_value AS final_value,
                      e.error AS final_error, e.finished_at AS final_at
        ), recorded AS (
            INSERT INTO django_tasks_q_taskresult ({HISTORY_COLUMNS})
            SELECT id, task_path, queue_name, priority, final_status, args, kwargs,
                   final_value,
                   CASE WHEN final_error IS NULL THEN errors
                        ELSE errors || jsonb_build_array(final_error) END,
                   worker_ids, attempts, enqueued_at, run_after, started_at,
                   last_attempted_at, final_at, group_id
            FROM moved
        )
        SELECT id, has_dependents FROM moved
    """
    ENDINGS = """
        SELECT * FROM jsonb_to_recordset(%(endings)s::jsonb) AS e(
            id uuid, status text, return_value jsonb, error jsonb, finished_at timestamptz)
    """

    # Tasks whose worker stopped renewing (killed, lost power, cut off): the
    # attempt failed with WorkerLost. Ready again (RECOVER) while the task
    # has crash retries left (WorkerLost errors so far < crash_retries; such
    # a rescue does not use up its own retries, so max_attempts grows by
    # one), or attempts left; else ended as failed (ABANDONED). A task
    # claimed ahead never started: it is ready again as it was, with no
    # error. SKIP LOCKED: two workers recovering at once split the rows.
    LOST_ERROR = f"""
        jsonb_build_object(
            'exception_class_path', '{WORKER_LOST}',
            'traceback', '{WORKER_LOST}: worker ' || t.worker_id
                || ' stopped renewing its lease during attempt ' || t.attempts || E'\\n')
    """
    CRASHES = f"""
        (SELECT count(*) FROM jsonb_array_elements(t.errors) AS e
         WHERE e->>'exception_class_path' = '{WORKER_LOST}')
    """
    RECOVER = f"""
        WITH lost AS (
            SELECT t.id, {CRASHES} < %(crash_retries)s AS rescued FROM django_tasks_q_task AS t
            WHERE t.status = 'RUNNING' AND t.lease_expires_at < %(now)s
            FOR UPDATE SKIP LOCKED
        ), recovered AS (
            UPDATE django_tasks_q_task AS t
            SET status = 'READY', worker_id = NULL, lease_expires_at = NULL,
                claimed_ahead = false, lost_ahead = t.lost_ahead OR t.claimed_ahead,
                errors = CASE WHEN t.claimed_ahead THEN t.errors
                              ELSE t.errors || jsonb_build_array({LOST_ERROR}) END,
                max_attempts = t.max_attempts + (lost.rescued AND NOT t.claimed_ahead)::int
            FROM lost WHERE t.id = lost.id
              AND (t.claimed_ahead OR lost.rescued OR t.attempts < t.max_attempts)
            RETURNING t.queue_name
        ), notified AS (
            SELECT pg_notify('{WAKE_CHANNEL}', queue_name) FROM recovered GROUP BY queue_name
        )
        SELECT (SELECT count(*) FROM recovered), (SELECT count(*) FROM notified)
    """
    ABANDONED = f"""
        SELECT t.id, 'FAILED' AS status, NULL::jsonb AS return_value,
               {LOST_ERROR} AS error, %(now)s::timestamptz AS finished_at
        FROM django_tasks_q_task AS t
        WHERE t.status = 'RUNNING' AND t.lease_expires_at < %(now)s
          AND t.attempts >= t.max_attempts AND {CRASHES} >= %(crash_retries)s
        FOR UPDATE SKIP LOCKED
    """
    # Waiting tasks past their deadline, soonest first (index taskq_task_expiry).
    # The claim already passes them over; this keeps them out of its way.
    EXPIRED = f"""
        SELECT t.id, 'EXPIRED' AS status, NULL::jsonb AS return_value,
               jsonb_build_object(
                   'exception_class_path', '{TASK_EXPIRED}',
                   'traceback', '{TASK_EXPIRED}: not started by its deadline, '
                       || to_char(t.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')
                       || E' UTC\\n') AS error,
               %(now)s::timestamptz AS finished_at
        FROM django_tasks_q_task AS t
        WHERE t.status = 'READY' AND t.expires_at IS NOT NULL AND t.expires_at <= %(now)s
        ORDER BY t.expires_at
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    """

    RETRY = """
        UPDATE django_tasks_q_task AS t
        SET status = 'READY', run_after = o.run_after, errors = o.errors,
            max_attempts = o.max_attempts, worker_id = NULL, lease_expires_at = NULL
        FROM jsonb_to_recordset(%(outcomes)s::jsonb)
            AS o(id uuid, run_after timestamptz, errors jsonb, max_attempts int)
        WHERE t.id = o.id AND t.worker_id = %(worker)s
        RETURNING t.id
    """

    # Undo the claim: the attempt did not happen (nothing was counted for a
    # task claimed ahead). Wake other workers for it.
    RELEASE = f"""
        WITH released AS (
            UPDATE django_tasks_q_task
            SET status = 'READY', worker_id = NULL, lease_expires_at = NULL,
                claimed_ahead = false,
                attempts = attempts - (NOT claimed_ahead)::int,
                worker_ids = CASE WHEN claimed_ahead THEN worker_ids ELSE worker_ids - (-1) END,
                started_at = CASE WHEN NOT claimed_ahead AND attempts = 1 THEN NULL
                                  ELSE started_at END
            WHERE id = ANY(%(ids)s::uuid[]) AND worker_id = %(worker)s
            RETURNING queue_name
        )
        SELECT pg_notify('{WAKE_CHANNEL}', queue_name) FROM released GROUP BY queue_name
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
    # The status check is on the updated row itself, so a task claimed while
    # the operator's cancel ran is seen as running once its claim commits.
    # Each worker holding one of them is woken once, when this commits.
    MARK_ABORTS = f"""
        WITH aborting AS (
            UPDATE django_tasks_q_task
            SET abort_requested_at = COALESCE(abort_requested_at, %(now)s)
            WHERE status = 'RUNNING' AND id = ANY(%(ids)s::uuid[])
            RETURNING worker_id
        ), notified AS (
            SELECT pg_notify('{ABORT_CHANNEL}', worker_id) FROM aborting GROUP BY worker_id
        )
        SELECT (SELECT count(*) FROM aborting), (SELECT count(*) FROM notified)
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

    # An operator's retry: unsuccessful results back in the queue, waking
    # idle workers on commit.
    REQUEUE_RESULTS = f"""
        WITH moved AS (
            DELETE FROM django_tasks_q_taskresult
            WHERE id = ANY(%(ids)s::uuid[]) AND status IN {UNSUCCESSFUL}
            RETURNING *
        ), queued AS ({REQUEUE_FROM.format(source="moved")} RETURNING queue_name
        ), notified AS (
            SELECT pg_notify('{WAKE_CHANNEL}', queue_name) FROM queued GROUP BY queue_name
        )
        SELECT (SELECT count(*) FROM queued), (SELECT count(*) FROM notified)
    """
    # A fresh copy of results: a new id, no attempts, ready now.
    RERUN = f"""
        WITH queued AS (
            INSERT INTO django_tasks_q_task
                (id, task_path, queue_name, priority, status, args, kwargs, run_after,
                 enqueued_at, attempts, max_attempts, errors, worker_ids)
            SELECT c.new_id, r.task_path, r.queue_name, r.priority, 'READY', r.args,
                   r.kwargs, %(now)s, %(now)s, 0, c.max_attempts, '[]', '[]'
            FROM jsonb_to_recordset(%(copies)s::jsonb)
                AS c(source uuid, new_id uuid, max_attempts int)
            JOIN django_tasks_q_taskresult AS r ON r.id = c.source
            RETURNING queue_name
        )
        SELECT pg_notify('{WAKE_CHANNEL}', queue_name) FROM queued GROUP BY queue_name
    """
    DELETE_WAITING = """
        DELETE FROM django_tasks_q_task WHERE id = ANY(%(ids)s::uuid[]) AND status = 'READY'
    """
    DELETE_RESULTS = "DELETE FROM django_tasks_q_taskresult WHERE id = ANY(%(ids)s::uuid[])"

    # wait(): mark the tasks waited for, so that whoever records them says
    # so (notify_finished); and which of them are still queued.
    MARK_WAITED_FOR = """
        UPDATE django_tasks_q_task SET has_dependents = true
        WHERE id = ANY(%s::uuid[]) AND NOT has_dependents
    """
    QUEUED = "SELECT id FROM django_tasks_q_task WHERE id = ANY(%s::uuid[])"

    def is_missing_table(self, error: Exception) -> bool:
        # 42P01: undefined_table, from psycopg's error under Django's.
        sqlstate = getattr(error.__cause__, "sqlstate", None)
        return sqlstate == "42P01" and "django_tasks_q_" in str(error)

    def commit_asynchronously(self, cursor: CursorWrapper) -> None:
        cursor.execute("SET LOCAL synchronous_commit TO OFF")

    def claim_statement(
        self,
        cursor: CursorWrapper,
        queues: list[str] | None,
        alone: bool,
        limited_queues: list[str],
        limited_due: str | None,
    ) -> tuple[str, dict[str, Any]] | None:
        params: dict[str, Any]
        if queues is None and limited_queues:
            served, params = self.SERVED_ALL_UNLIMITED, {}
        elif queues is None:
            served, params = self.SERVED_ALL, {}
        else:
            if not (unlimited := [name for name in queues if name not in limited_queues]):
                return None
            served, params = self.SERVED_NAMED, {"queues": unlimited}
        asynchronously = self.CLAIM_ALONE if alone else ""
        claimable = self.CLAIMABLE.format(served=served)
        if limited_due is None:
            statement = self.CLAIM.format(claimable=claimable, commit_asynchronously=asynchronously)
        else:
            statement = self.CLAIM_LOOKING.format(
                claimable=claimable, commit_asynchronously=asynchronously, limited_due=limited_due
            )
        return statement, params

    # -- limits (see LIMITED_CLAIMABLE) ---------------------------------------------

    QUEUE_LIMITS = """
        SELECT * FROM jsonb_to_recordset(%(queue_limits)s::jsonb)
            AS q(name text, concurrency int, rate int, period int)
    """
    SERVED_IN = "t.queue_name = ANY(%(served_queues)s::text[])"
    LIMITED_QUEUE = "t.queue_name = ANY(%(limited_queues)s::text[])"
    # The limited claim also counts its starts against rate limits, and
    # forgets the starts that no longer count.
    CLAIMABLE_LIMITED = f"""
        {
        LIMITED_CLAIMABLE.format(
            queue_limits="{queue_limits}",
            served="{served}",
            least="LEAST",
            lock="FOR UPDATE OF t SKIP LOCKED",
        )
    },
        counted AS (
            INSERT INTO django_tasks_q_ratelimitstart (key, rate_limit, expires_at)
            {RATE_STARTS.format(claimed="claimable")}
        ), forgotten AS (
            DELETE FROM django_tasks_q_ratelimitstart WHERE expires_at <= %(epoch)s
        )"""
    MARK_LIMITED = MARK_LIMITED.format(
        key="c.key",
        calls="jsonb_to_recordset(%(calls)s::jsonb) AS c(id uuid, key text)",
        id="c.id",
    )
    # Limited claims one at a time (see LIMITED_CLAIMABLE), until their
    # transaction ends; the number is "taskq" in ASCII.
    LOCK_LIMITED_CLAIMS = "SELECT pg_advisory_xact_lock(116097115107113)"

    def count_starts(self, cursor: CursorWrapper, task_ids: list[str], params: dict) -> None:
        pass  # CLAIMABLE_LIMITED counted them

    def claim_limited_statement(self, queues: list[str] | None) -> str:
        served = "TRUE" if queues is None else self.SERVED_IN
        claimable = self.CLAIMABLE_LIMITED.format(queue_limits=self.QUEUE_LIMITS, served=served)
        return self.CLAIM.format(claimable=claimable, commit_asynchronously="")

    def inserted_ids(self, cursor: CursorWrapper) -> set[str]:
        [(ids, _)] = cursor.fetchall()
        return {str(task_id) for task_id in ids or ()}

    def counted(self, cursor: CursorWrapper) -> int:
        # The statements that count also notify: the count is their first column.
        return int(cursor.fetchone()[0])

    # END and REQUEUE_RESULTS delete what they moved in the same statement.
    def ended(self, cursor: CursorWrapper) -> Ended:
        return Ended(
            (str(task_id), has_dependents) for task_id, has_dependents in cursor.fetchall()
        )

    def requeued(self, cursor: CursorWrapper) -> int:
        return self.counted(cursor)

    def notify(self, cursor: CursorWrapper, queues: Any) -> None:
        if queues := list(queues):
            cursor.execute(
                f"SELECT pg_notify('{WAKE_CHANNEL}', queue) FROM unnest(%s::text[]) AS queue",
                [queues],
            )

    def notify_finished(self, cursor: CursorWrapper, task_ids: Iterable[str | uuid.UUID]) -> None:
        ids = [_task_id(task_id) for task_id in task_ids]
        payloads = [
            ",".join(ids[start : start + IDS_PER_NOTIFICATION])
            for start in range(0, len(ids), IDS_PER_NOTIFICATION)
        ]
        if payloads:
            cursor.execute(
                f"SELECT pg_notify('{FINISHED_CHANNEL}', p) FROM unnest(%s::text[]) AS p",
                [payloads],
            )
