"""The worker loop: claim in batches, run in a pool, record in batches.

One thread (the one that calls ``Worker.run``) does all the queue's store
work (database or Redis); executors only run task code. Each turn of the loop records the
outcomes that have come back and claims more tasks in one transaction, so a
busy worker pays one commit per batch, not per task.

Two numbers shape the batches:

* claims go ahead of the free slots by up to PREFETCH_SECONDS of work per
  slot, judged by how long recent tasks took: many short tasks are claimed in
  one statement, while long tasks are claimed one per free slot, so they are
  not held back from other workers. Tasks claimed ahead wait in an
  executor's queue with no attempt counted in the store: if the worker is
  killed, they go back as they were (statements.py, "Claimed ahead"). A slot
  that frees takes the next one at once, and the store counts that attempt
  in the next exchange, which records outcomes and claims anyway;
* an outcome, or such a start, waits at most FLUSH_INTERVAL for others to be
  recorded with it.
"""

import logging
import os
import queue
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from inspect import iscoroutinefunction
from types import FrameType
from typing import TYPE_CHECKING, Any

from django.db import close_old_connections
from django.utils import timezone
from django.utils.crypto import get_random_string

from ..backends.contract import WORKER_ID_MAX_LENGTH, ClaimedTask, Outcome, WorkerStore
from ..backoff import Outage
from ..exceptions import TaskNotRegistered, WorkerStartupError
from ..hooks import run_worker_start_hooks
from ..payloads import error_line
from ..registry import autodiscover, resolve
from ..schedules import declared_schedules
from .asyncio_loop import AsyncioLoop
from .execution import (
    Job,
    aborted_attempt,
    cancelled_when_aborted,
    failed_attempt,
    send_finished,
    unstorable_outcome,
)
from .pool import Executor, Pool
from .scheduler import Scheduler
from .threads import ThreadPool

if TYPE_CHECKING:  # prometheus_client is optional: only --metrics-port imports it
    from ..metrics import WorkerMetrics

logger = logging.getLogger("django_tasks_q.worker")

FLUSH_INTERVAL = 0.005  # seconds an outcome or a start may wait to be recorded with others
FLUSH_BATCH = 500  # outcomes recorded at once at most
PREFETCH_SECONDS = 0.05  # work claimed ahead per slot, by recent task durations
MAX_PREFETCH = 100  # tasks claimed ahead per slot at most
PRUNE_INTERVAL = 60.0  # seconds between a worker's deletions of expired results
SCHEDULE_INTERVAL = 1.0  # seconds between a worker's looks for due periodic tasks, at most

# What signal.signal() takes and returns.
type SignalHandler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


class Wakeup:
    """What the loop sleeps on, and what wakes it: a finished task, a
    notification, a signal.

    Like ``threading.Event``, but safe to set from a signal handler. A
    handler runs in the main thread between two bytecodes, possibly while
    that thread is inside ``Event.wait()`` holding the event's lock, and
    ``Event.set()`` would then wait for that lock forever (a second Ctrl-C
    hung the worker). ``SimpleQueue`` is reentrant: its ``put()`` cannot
    deadlock with a ``get()`` it interrupts.
    """

    def __init__(self) -> None:
        self._tokens: queue.SimpleQueue[None] = queue.SimpleQueue()

    def set(self) -> None:
        self._tokens.put(None)

    def clear(self) -> None:
        while not self._tokens.empty():
            try:
                self._tokens.get_nowait()
            except queue.Empty:
                return

    def wait(self, timeout: float) -> bool:
        """Until set (since the last ``clear()``) or ``timeout`` seconds;
        True if set."""
        try:
            self._tokens.get(timeout=timeout)
        except queue.Empty:
            return False
        self._tokens.put(None)  # stays set until cleared, as an Event does
        return True


def check_worker_id(worker_id: str) -> None:
    """ValueError if the store cannot hold ``worker_id``: every claim would fail."""
    if len(worker_id) > WORKER_ID_MAX_LENGTH:
        raise ValueError(
            f"The worker id {worker_id[:20]!r}... is {len(worker_id)} characters long; "
            f"at most {WORKER_ID_MAX_LENGTH} fit in the queue: give a shorter --worker-id."
        )


def default_worker_id() -> str:
    return f"{socket.gethostname()[:40]}-{os.getpid()}-{get_random_string(6)}"


class Worker:
    def __init__(
        self,
        backend: WorkerStore,
        *,
        queues: list[str] | None = None,
        concurrency: int = 4,
        burst: bool = False,
        max_tasks: int | None = None,
        poll_interval: float | None = None,
        shutdown_timeout: float = 25.0,
        worker_id: str | None = None,
        pool: str = "thread",
        max_tasks_per_child: int | None = None,
        schedules: bool = True,
        metrics: "WorkerMetrics | None" = None,
    ) -> None:
        self.backend = backend
        self.metrics = metrics
        self.queues = queues  # None: every queue
        self.concurrency = concurrency
        self.burst = burst
        self.max_tasks = max_tasks
        self.poll_interval = poll_interval or backend.poll_interval
        self.shutdown_timeout = shutdown_timeout
        self.worker_id = worker_id or default_worker_id()
        check_worker_id(self.worker_id)
        self.pool_kind = pool
        self.max_tasks_per_child = max_tasks_per_child
        # A burst worker drains the queue and exits: it leaves schedules to
        # the workers that keep running.
        self.schedules = schedules and not burst
        self._scheduler: Scheduler | None = None

        self._wake = Wakeup()
        self._done: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
        self._in_flight: dict[str, Job] = {}  # claimed: running or waiting for a slot
        self._began: queue.SimpleQueue[ClaimedTask] = queue.SimpleQueue()  # started from ahead
        self._busy: Counter[Executor] = Counter()  # jobs handed to each executor, not done
        self._pending: list[Outcome] = []  # outcomes not yet recorded
        self._unmarked: list[ClaimedTask] = []  # started from ahead, not yet told to the store
        self._pending_since = 0.0  # when the oldest pending outcome or start came in
        self._mean_duration: float | None = None  # of recent attempts, in seconds
        self._claimed_total = 0
        self._stop_at: float | None = None  # set by the first signal
        self._stop_now = False  # set by the second
        self._outage = Outage("The queue", logger)  # while the store is unavailable
        self._retry_in = 0.0  # seconds until the next try, after a failed exchange
        # Renew leases four times per lease: one late beat is not a lost task.
        self._heartbeat_interval = backend.lease.total_seconds() / 4
        self._next_heartbeat = 0.0
        self._next_prune = 0.0
        # Abort requests: looked for every poll_interval while tasks are held,
        # and at once when the store notifies us (PostgreSQL, Redis).
        self._next_abort_check = 0.0
        self._abort_notified = False
        self._fatal: WorkerStartupError | None = None  # a pool could not start
        self._next_schedule_check = 0.0

    # -- lifecycle -------------------------------------------------------------

    def run(self) -> None:
        """Run until stopped. Raises ``WorkerStartupError`` if a start-up hook fails."""
        autodiscover(
            self.backend.task_modules, f"TASKS[{self.backend.alias!r}]['OPTIONS']['task_modules']"
        )
        if self.pool_kind != "process":  # else each child runs them
            try:
                run_worker_start_hooks()
            except WorkerStartupError:
                logger.exception("Worker %s cannot start", self.worker_id)
                raise
        previous = self._install_signal_handlers()
        self.pool: Pool
        self.asyncio: AsyncioLoop | None
        if self.pool_kind == "process":
            from .processes import ProcessPool  # multiprocessing: loaded only for this pool

            self.pool = ProcessPool(
                self.backend,
                self.concurrency,
                self._job_done,
                self._pool_failed,
                self.max_tasks_per_child,
            )
            self.asyncio = None  # async tasks run in the children too
        else:
            self.pool = ThreadPool(self.backend, self.concurrency, self._job_done)
            self.asyncio = AsyncioLoop(self.backend, self.concurrency, self._job_done)
        self._register()
        self._scheduler = self._make_scheduler()
        listener = self.backend.listen(
            self.queues, self._wake.set, worker_id=self.worker_id, on_abort=self._abort_requested
        )
        logger.info(
            "Worker %s started: backend %r, queues %s, %s pool of %d; %s",
            self.worker_id,
            self.backend.alias,
            ", ".join(self.queues) if self.queues else "(all)",
            self.pool_kind,
            self.concurrency,
            f"polling every {self.poll_interval} s"
            if listener is None
            else f"wake-ups: {listener.connection_name}",
        )
        try:
            self._loop()
        finally:
            if listener is not None:
                listener.stop()
            self.pool.shutdown()
            if self.asyncio is not None:
                self.asyncio.shutdown()
            self._unregister()
            self._restore_signal_handlers(previous)
        if self._fatal is not None:
            raise self._fatal
        logger.info("Worker %s stopped", self.worker_id)

    def stop(self, now: bool = False) -> None:
        """Stop claiming; with ``now``, hand running tasks back instead of waiting."""
        if self._stop_at is None:
            self._stop_at = time.monotonic() + self.shutdown_timeout
        else:
            now = True
        self._stop_now = self._stop_now or now
        self._wake.set()

    def _install_signal_handlers(self) -> dict[signal.Signals, SignalHandler]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        return {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}

    def _restore_signal_handlers(self, previous: dict[signal.Signals, SignalHandler]) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._stop_at is None:
            logger.info(
                "%s: finishing %d running task(s) (up to %.0f s); "
                "signal again to hand them back now",
                signal.Signals(signum).name,
                sum(job.started is not None for job in self._in_flight.values()),
                self.shutdown_timeout,
            )
        self.stop()

    # -- the loop --------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            self._wake.clear()
            if time.monotonic() >= self._next_heartbeat:
                self._heartbeat()
            if self._scheduler and self._stop_at is None:
                if time.monotonic() >= self._next_schedule_check:
                    self._run_schedules(self._scheduler)
            self._collect()
            self._check_aborts()
            if self._stop_at is not None:
                if self._stopping(self._stop_at):
                    return
                continue
            limit = self._claim_limit()
            if limit or self._flush_due():
                claimed = self._exchange(limit)
                if claimed is None:  # the store is unavailable
                    self._sleep(self._retry_in)
                    continue
                for task in claimed:
                    self._take(task)
                if claimed and len(claimed) == limit:
                    continue  # there may be more: claim again at once
                # Fewer than asked for: the queue is empty for now, and a
                # notification or a finished task wakes the loop.
            if not self._in_flight and not self._pending:
                if self.burst or self._limit_reached():
                    return
            self._wake.wait(self._wait_time())

    def _stopping(self, stop_at: float) -> bool:
        """One turn of shutting down (by ``stop_at``, on the monotonic clock);
        True once there is nothing left to do."""
        give_up = self._stop_now or time.monotonic() >= stop_at
        # Tasks still waiting for a slot go back at once; running ones may
        # finish until the grace period is over.
        handed_back = self._hand_back(running_too=give_up)
        if give_up and not handed_back:
            logger.error(
                "Exiting without handing back %d task(s): they run again once their leases expire",
                len(self._in_flight),
            )
            return True
        if (self._pending or self._unmarked) and self._exchange(0) is None:
            if give_up:
                logger.error(
                    "Exiting with %d outcome(s) unrecorded: those tasks run "
                    "again once their leases expire",
                    len(self._pending),
                )
                return True
            self._sleep(self._retry_in)
            return False
        if not self._in_flight:
            return True
        self._wake.wait(self._wait_time())
        return False

    def _claim_limit(self) -> int:
        """How many tasks to claim now: 0 until the claimed-ahead buffer runs low."""
        if self._mean_duration is None:
            prefetch = 0
        else:
            per_slot = PREFETCH_SECONDS / max(self._mean_duration, 1e-4)
            prefetch = int(min(per_slot, MAX_PREFETCH) * self.concurrency)
        capacity = self.concurrency + prefetch
        held = len(self._in_flight)
        if held >= capacity or held > self.concurrency + prefetch // 2:
            return 0
        limit = capacity - held
        if self.max_tasks is not None:
            limit = min(limit, self.max_tasks - self._claimed_total)
        return max(limit, 0)

    def _run_now(self) -> int:
        """How many tasks a claim should start at once: the pool's free slots
        (the rest are claimed ahead)."""
        return max(self.concurrency - self._busy[self.pool], 0)

    def _flush_due(self) -> bool:
        if not self._pending and not self._unmarked:
            return False
        return (
            len(self._pending) >= FLUSH_BATCH
            or not self._in_flight
            or time.monotonic() - self._pending_since >= FLUSH_INTERVAL
        )

    def _limit_reached(self) -> bool:
        return self.max_tasks is not None and self._claimed_total >= self.max_tasks

    def _wait_time(self) -> float:
        deadlines = [self._next_heartbeat, self.pool.next_deadline(), self._stop_at]
        if self._scheduler and self._stop_at is None:  # a stopping worker ticks nothing
            deadlines.append(self._next_schedule_check)
        if self._pending or self._unmarked:
            deadlines.append(self._pending_since + FLUSH_INTERVAL)
        wait = min([self.poll_interval] + [d - time.monotonic() for d in deadlines if d])
        return max(wait, 0.0)

    # -- liveness --------------------------------------------------------------

    def _register(self) -> None:
        try:
            self.backend.register_worker(
                self.worker_id,
                queues=self.queues,
                concurrency=self.concurrency,
                pool=self.pool_kind,
            )
        except self.backend.transient_errors as error:
            self._outage.noted(error, f"Registering worker {self.worker_id}")
            close_old_connections()

    def _unregister(self) -> None:
        try:
            self.backend.unregister_worker(self.worker_id)
        except self.backend.transient_errors as error:
            self._outage.noted(error, f"Unregistering worker {self.worker_id}")

    def _heartbeat(self) -> None:
        """Renew our leases, recover tasks whose workers have died, record
        tasks past their deadline as expired, and now and then delete a batch
        of results past their retention."""
        self._next_heartbeat = time.monotonic() + self._heartbeat_interval
        try:
            held = [*self._in_flight, *(o.claimed.id for o in self._pending)]
            if not self.backend.heartbeat(self.worker_id, held):
                self._register()
            recovered = self.backend.recover()
            if expired := self.backend.expire_tasks():
                logger.info("Recorded %d task(s) not started by their deadline as expired", expired)
            if time.monotonic() >= self._next_prune:
                self._next_prune = time.monotonic() + PRUNE_INTERVAL
                if pruned := self.backend.prune_results():
                    logger.info("Deleted %d result(s) past their result_ttl", pruned)
        except self.backend.transient_errors as error:
            self._outage.noted(error, "Heartbeat")
            close_old_connections()
            self._next_heartbeat = time.monotonic() + min(self._heartbeat_interval, 1.0)
            return
        self._outage.reached()
        if recovered:
            logger.warning("Recovered %d task(s) from workers that stopped renewing", recovered)
            if self.metrics:
                self.metrics.recovered_tasks(recovered)

    # -- periodic tasks --------------------------------------------------------

    def _make_scheduler(self) -> Scheduler | None:
        """The schedules this worker ticks: those of its backend's tasks in its queues."""
        if not (self.schedules and self.backend.supports_periodic):
            return None
        mine = [
            schedule
            for schedule in declared_schedules()
            if schedule.task.backend == self.backend.alias
            and (self.queues is None or schedule.task.queue_name in self.queues)
        ]
        if not mine:
            return None
        logger.info("Worker %s ticks %d schedule(s)", self.worker_id, len(mine))
        return Scheduler(self.backend, mine)

    def _run_schedules(self, scheduler: Scheduler) -> None:
        self._next_schedule_check = time.monotonic() + SCHEDULE_INTERVAL
        try:
            scheduler.run_due()
        except self.backend.transient_errors as error:
            self._outage.noted(error, "Enqueueing periodic tasks")
            close_old_connections()
            return
        if scheduler.next_due is not None:
            # Look again at the next tick, if it comes sooner: on time, not up to a second late.
            until = (scheduler.next_due - timezone.now()).total_seconds()
            self._next_schedule_check = min(
                self._next_schedule_check, time.monotonic() + max(until, 0.0)
            )

    # -- claiming and recording ----------------------------------------------------

    def _exchange(self, limit: int) -> list[ClaimedTask] | None:
        """Tell the store of the tasks started from ahead, record what is
        pending and claim up to ``limit`` tasks, in one go. Returns those claimed."""
        # Every attempt whose outcome is pending began before it ended: its
        # start is in by now, and goes first.
        self._note_starts()
        outcomes = self._pending[:FLUSH_BATCH]
        started = self._unmarked
        run_now = self._run_now() if limit else 0
        try:
            try:
                recorded, claimed = self.backend.record_and_claim(
                    outcomes, self.queues, limit, self.worker_id, started=started, run_now=run_now
                )
            except self.backend.transient_errors:
                raise
            except Exception:
                if not outcomes:
                    raise  # a claim that would fail again: the worker cannot work
                # Not the store being away: an outcome it cannot hold (a value
                # the database refuses, say), which would fail again and again.
                # Count the starts first (the outcomes may be of those
                # attempts), record the outcomes one at a time, then claim.
                if started:
                    self.backend.record_and_claim([], None, 0, self.worker_id, started=started)
                self._unmarked = []
                recorded = self._record_one_by_one(outcomes)
                _, claimed = self.backend.record_and_claim(
                    [], self.queues, limit, self.worker_id, run_now=run_now
                )
        except self.backend.transient_errors as error:
            self._retry_in = self._outage.failed(error)
            close_old_connections()
            return None
        self._outage.reached()
        self._unmarked = []
        self._pending = self._pending[len(outcomes) :]
        self._pending_since = time.monotonic()
        self._report(outcomes, recorded)
        self._claimed_total += len(claimed)
        return claimed

    def _record_one_by_one(self, outcomes: list[Outcome]) -> list[Outcome]:
        """Record ``outcomes`` one at a time, so that one the store refuses
        fails its task alone (with an error saying why) and the rest are
        recorded as they are. A refused one is replaced in ``outcomes`` by
        what was stored instead."""
        recorded: list[Outcome] = []
        for index, outcome in enumerate(outcomes):
            try:
                done, _ = self.backend.record_and_claim([outcome], None, 0, self.worker_id)
            except self.backend.transient_errors:
                raise
            except Exception as error:  # noqa: BLE001 - the store refused this outcome
                logger.error(
                    "Task %s %s: its outcome (%s) could not be stored; recording "
                    "an OutcomeNotStored error instead: %s",
                    outcome.claimed.id,
                    outcome.claimed.task_path,
                    outcome.status,
                    error_line(error),
                )
                outcomes[index] = outcome = unstorable_outcome(outcome, error)
                done, _ = self.backend.record_and_claim([outcome], None, 0, self.worker_id)
            recorded += done
        return recorded

    def _take(self, claimed: ClaimedTask) -> None:
        """Hand a task the store gave us to its executor: it runs when a slot
        takes it, at once if the claim started it."""
        try:
            task = resolve(claimed.task_path)
        except TaskNotRegistered as error:
            # Never import what a row names: fail this task, keep working.
            self._add_pending(failed_attempt(claimed, None, error, None))
            return
        job = Job(claimed, task, timeout=task.timeout)
        if claimed.ahead:
            job.start_ahead = self._start_ahead
        self._in_flight[claimed.id] = job
        self._submit(job)

    def _start_ahead(self, claimed: ClaimedTask) -> ClaimedTask:
        """In an executor's thread, as a slot takes a task claimed ahead: the
        task started, as START will start it in the store (the loop tells the
        store in its next exchange)."""
        now = timezone.now()
        started = replace(
            claimed,
            attempts=claimed.attempts + 1,
            worker_ids=[*claimed.worker_ids, self.worker_id],
            started_at=claimed.started_at or now,
            last_attempted_at=now,
            ahead=False,
        )
        self._began.put(started)
        self._wake.set()  # so that the loop sees the start and times its flush
        return started

    def _submit(self, job: Job) -> None:
        executor = self._executor_for(job)
        self._busy[executor] += 1
        executor.submit(job)

    def _forget(self, task_id: str) -> Job | None:
        """Drop a task from those held; the job, if it was held."""
        job = self._in_flight.pop(task_id, None)
        if job is not None:
            self._busy[self._executor_for(job)] -= 1
        return job

    def _executor_for(self, job: Job) -> Executor:
        if self.asyncio is not None and iscoroutinefunction(job.task.func):
            return self.asyncio
        return self.pool

    def _job_done(self, outcome: Outcome) -> None:
        # In an executor's thread: hand over to the loop, which owns all queue state.
        self._done.put(outcome)
        self._wake.set()

    def _add_pending(self, outcome: Outcome) -> None:
        if not self._pending and not self._unmarked:
            self._pending_since = time.monotonic()
        self._pending.append(outcome)

    def _note_starts(self) -> None:
        """Take in the tasks started from ahead since last time."""
        while True:
            try:
                started = self._began.get_nowait()
            except queue.Empty:
                return
            if not self._pending and not self._unmarked:
                self._pending_since = time.monotonic()
            self._unmarked.append(started)

    def _collect(self) -> None:
        self._note_starts()  # a start is due for recording as an outcome is
        self.pool.expire()  # timed-out attempts arrive as outcomes too
        while True:
            try:
                outcome = self._done.get_nowait()
            except queue.Empty:
                break
            if (job := self._forget(outcome.claimed.id)) is not None:
                if job.aborting.is_set():
                    outcome = cancelled_when_aborted(outcome)
                self._add_pending(outcome)
                duration = outcome.duration
                mean = self._mean_duration
                self._mean_duration = duration if mean is None else 0.9 * mean + 0.1 * duration

    # -- aborts ----------------------------------------------------------------------

    def _abort_requested(self) -> None:
        # In the listener's thread: the loop looks at its next turn.
        self._abort_notified = True
        self._wake.set()

    def _check_aborts(self) -> None:
        """Stop the tasks we hold that someone asked to abort: one query for
        all of them, at most every poll_interval unless notified."""
        if not self._in_flight:
            return
        if not self._abort_notified and time.monotonic() < self._next_abort_check:
            return
        self._abort_notified = False
        self._next_abort_check = time.monotonic() + self.poll_interval
        try:
            requested = self.backend.aborts_requested(self.worker_id, list(self._in_flight))
        except self.backend.transient_errors as error:
            self._outage.noted(error, "Looking for abort requests")
            close_old_connections()
            return
        for task_id in requested:
            job = self._in_flight.get(task_id)
            if job is None or job.aborting.is_set():
                continue
            job.aborting.set()
            logger.info("Task %s %s: abort requested", task_id, job.claimed.task_path)
            if job.hand_back():  # claimed ahead, not started: it never will be
                self._forget(task_id)
                self._add_pending(aborted_attempt(job, "it had not started"))
            else:
                self._executor_for(job).abort(job)

    def _pool_failed(self, error: WorkerStartupError) -> None:
        # In a pool's thread: stop as on SIGTERM, then run() raises the error.
        logger.error("Worker %s: %s", self.worker_id, error)
        if self._fatal is None:
            self._fatal = error
        self.stop()

    def _report(self, outcomes: list[Outcome], recorded: list[Outcome]) -> None:
        """Log each outcome, and send task_finished for those now stored."""
        kept = {o.claimed.id for o in recorded}
        for outcome in outcomes:
            claimed = outcome.claimed
            if claimed.id not in kept:
                logger.warning(
                    "Task %s %s: its lease was lost before its outcome (%s) was "
                    "recorded; another worker has it now",
                    claimed.id,
                    claimed.task_path,
                    outcome.status,
                )
                continue
            if self.metrics:
                self.metrics.recorded(outcome)
            if outcome.status == Outcome.RETRY:
                retry_at = outcome.retry_at or outcome.finished_at  # set with RETRY
                logger.info(
                    "Task %s %s failed (attempt %d), retrying in %.1f s: %s",
                    claimed.id,
                    claimed.task_path,
                    claimed.attempts,
                    (retry_at - outcome.finished_at).total_seconds(),
                    outcome.error_line,
                )
            else:
                logger.info(
                    "Task %s %s %s in %.1f ms (attempt %d)%s",
                    claimed.id,
                    claimed.task_path,
                    outcome.status.lower(),
                    outcome.duration * 1000,
                    claimed.attempts,
                    f": {outcome.error_line}" if outcome.error_line else "",
                )
                send_finished(self.backend, outcome)

    def _hand_back(self, running_too: bool = False) -> bool:
        """Return claimed tasks to the queue: those still waiting for a slot,
        and with ``running_too`` those running (their outcome is then dropped).
        False if the store could not be reached."""
        ids = [key for key, job in self._in_flight.items() if job.hand_back(running_too)]
        if not ids:
            return True
        try:
            self.backend.release(ids, self.worker_id)
        except self.backend.transient_errors as error:
            self._outage.noted(error, f"Handing back {len(ids)} task(s)")
            close_old_connections()
            return False
        for key in ids:
            self._forget(key)
        # A start of these still to tell the store changes nothing now: START
        # takes only tasks this worker holds.
        logger.info("Handed back %d unfinished task(s)", len(ids))
        return True

    def _sleep(self, seconds: float) -> None:
        """Wait out a back-off step. A stop cuts it short: asked for during
        the wait, it ends it (an outage's step may be 30 s); while stopping,
        the wait ends by the stop's deadline; a second signal ends any."""
        stopping = self._stop_at is not None
        deadline = time.monotonic() + seconds
        if self._stop_at is not None:
            deadline = min(deadline, self._stop_at)
        while not self._stop_now and (left := deadline - time.monotonic()) > 0:
            if self._stop_at is not None and not stopping:
                return
            self._wake.wait(left)
            self._wake.clear()
