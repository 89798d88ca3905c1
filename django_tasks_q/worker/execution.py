"""One attempt at one task: call it, and decide what its ending means.

The same functions serve every executor: the thread pool calls
``run_attempt`` in its threads, the process pool in its children, and the
asyncio loop awaits ``arun_attempt``; ``testing.run_tasks`` calls
``run_attempt`` in a test's own process.
"""

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from traceback import format_exception
from typing import Any

from asgiref.sync import sync_to_async
from django.db import connections
from django.utils import timezone

from ..backends.contract import ClaimedTask, Outcome, WorkerStore
from ..compat import task_finished, task_started
from ..exceptions import WORKER_LOST, OutcomeNotStored, Retry, TaskAborted, WorkerLost
from ..hooks import worker_resources
from ..payloads import error_from, error_line, return_value
from ..task import QTask, QTaskContext, QTaskResult
from ..tracing import run_span

logger = logging.getLogger("django_tasks_q.worker")


class TaskTimeout(Exception):
    """The attempt ran longer than the task's ``timeout``."""


_job_lock = threading.Lock()


@dataclass(slots=True, eq=False)
class Job:
    """A claimed task handed to an executor.

    A worker claims ahead of its free slots, so a job may wait in an
    executor's queue. ``begin()`` (the executor, when a slot takes it) and
    ``hand_back()`` (the worker, when it stops) race for a waiting job; the
    lock lets exactly one of them win. A task claimed ahead is started as it
    begins (``start_ahead``): the store has counted no attempt for it yet.
    """

    claimed: ClaimedTask
    task: QTask  # the registered task
    timeout: float | None = None
    started: float | None = None  # time.monotonic(), once running
    handed_back: bool = False
    # Set when someone asks for the task to stop; its context reads it.
    aborting: threading.Event = field(default_factory=threading.Event)
    # For a task claimed ahead: gives it as started, as the store would start it.
    start_ahead: Callable[[ClaimedTask], ClaimedTask] | None = None

    def begin(self) -> bool:
        with _job_lock:
            if self.handed_back:
                return False
            self.started = time.monotonic()
            if self.start_ahead is not None:
                self.claimed = self.start_ahead(self.claimed)
            return True

    def hand_back(self, running_too: bool = False) -> bool:
        with _job_lock:
            if self.started is not None and not running_too:
                return False
            self.handed_back = True
            return True

    @property
    def deadline(self) -> float | None:
        """When the running attempt overruns its timeout; None without one."""
        if self.started is None or self.timeout is None:
            return None
        return self.started + self.timeout


def close_old_connections() -> None:
    """Django's ``close_old_connections``, sparing connections in a transaction:
    ``testing.run_tasks`` runs attempts inside a test's, which closing would end."""
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()


def _start(
    backend: WorkerStore,
    claimed: ClaimedTask,
    task: QTask,
    result: QTaskResult,
    aborting: threading.Event | None,
) -> list[Any]:
    """Send task_started with ``result``; return the positional arguments for the call."""
    task_started.send(sender=type(backend), task_result=result)
    if task.takes_context:
        context = QTaskContext(
            task_result=result,
            resources=worker_resources(),
            abort_event=aborting or threading.Event(),
        )
        return [context, *claimed.args]
    return claimed.args


def _succeeded(claimed: ClaimedTask, task: QTask, value: Any, started: float) -> Outcome:
    return Outcome(
        claimed=claimed,
        status="SUCCESSFUL",
        finished_at=timezone.now(),
        duration=time.monotonic() - started,
        return_value=return_value(task, value),
    )


def run_attempt(
    backend: WorkerStore,
    claimed: ClaimedTask,
    task: QTask,
    aborting: threading.Event | None = None,
) -> Outcome:
    """Run ``task`` for ``claimed`` in this thread and return the outcome.

    ``aborting``: the event that tells the task's context an abort was requested.
    """
    started = time.monotonic()
    # As Django does around a request: drop connections that are broken or
    # past CONN_MAX_AGE, so a long-lived worker thread doesn't hold a dead one.
    close_old_connections()
    # The failure is logged inside the span, so that log records (and error
    # trackers reading them) carry the run's trace.
    result = None
    with run_span(claimed) as span:
        try:
            result = _running_result(backend, claimed)
            args = _start(backend, claimed, task, result, aborting)
            outcome = _succeeded(claimed, task, task.call(*args, **claimed.kwargs), started)
        except BaseException as error:  # noqa: BLE001 - a task's failure is data
            span.failed(error)
            outcome = failed_attempt(claimed, task, error, started)
        finally:
            close_old_connections()
    outcome.result = result
    return outcome


async def arun_attempt(
    backend: WorkerStore,
    claimed: ClaimedTask,
    task: QTask,
    aborting: threading.Event | None = None,
) -> Outcome:
    """``run_attempt`` for an ``async def`` task, on the worker's event loop."""
    started = time.monotonic()
    await sync_to_async(close_old_connections)()
    result = None
    with run_span(claimed) as span:
        try:
            result = _running_result(backend, claimed)
            args = _start(backend, claimed, task, result, aborting)
            outcome = _succeeded(claimed, task, await task.acall(*args, **claimed.kwargs), started)
        except asyncio.CancelledError as error:  # a timeout or an abort: the loop says which
            span.failed(error)
            raise
        except BaseException as error:  # noqa: BLE001 - a task's failure is data, as in run_attempt
            # Even SystemExit or KeyboardInterrupt: raised by a task, they end
            # that task, not the loop's thread (a real Ctrl-C reaches the worker
            # as a signal in its main thread).
            span.failed(error)
            outcome = failed_attempt(claimed, task, error, started)
        finally:
            await sync_to_async(close_old_connections)()
    outcome.result = result
    return outcome


def _running_result(backend: WorkerStore, claimed: ClaimedTask) -> QTaskResult:
    """The result task_started is sent with: the row's task (its priority and
    queue, which ``using()`` may have changed), running."""
    task = backend.resolve_task(claimed.task_path, claimed.priority, claimed.queue_name)
    return backend.result_for_claimed(claimed, task)


def send_finished(backend: WorkerStore, outcome: Outcome) -> None:
    """Send ``task_finished`` for a recorded outcome; a retry has not finished."""
    if outcome.status == Outcome.RETRY:
        return
    result = outcome.result or _running_result(backend, outcome.claimed)
    task_finished.send(type(backend), task_result=backend.end_result(result, outcome))


def failed_attempt(
    claimed: ClaimedTask, task: QTask | None, error: BaseException, started: float | None
) -> Outcome:
    """A failure, retried if the task's policy has an attempt left.

    ``task``: None when the row names no registered task (never retried).
    ``started``: when the attempt began; None if it never did (it took no time).
    """
    now = timezone.now()
    retrying = task if task is not None and claimed.attempts < claimed.max_attempts else None
    if isinstance(error, Retry) and retrying is None and task is not None:
        # The task's own figure: max_attempts also grows with crash rescues.
        error.add_note(f"The task has no retries left (max_retries={task.max_retries}).")
    if not isinstance(error, TaskAborted):  # asked for: the worker logs the request
        _log_traceback(claimed, error, final=retrying is None)
    outcome = Outcome(
        claimed=claimed,
        status="FAILED",
        finished_at=now,
        duration=0.0 if started is None else time.monotonic() - started,
        error=error_from(error, "".join(format_exception(error))),
        error_line=error_line(error),
    )
    if retrying is not None:
        if isinstance(error, Retry) and error.delay is not None:
            delay = timedelta(seconds=error.delay)
        else:
            delay = retrying.retry_delay(claimed.attempts)
        outcome.status, outcome.retry_at = Outcome.RETRY, now + delay
    return outcome


def _log_traceback(claimed: ClaimedTask, error: BaseException, final: bool) -> None:
    """Log the error with its traceback (``exc_info``), here where it was caught
    (the executor's thread or child process), so that log pipelines and error
    trackers get the stack; the task as ``extra`` fields to group by."""
    logger.log(
        logging.ERROR if final else logging.WARNING,
        "Task %s %s: attempt %d raised %s%s",
        claimed.id,
        claimed.task_path,
        claimed.attempts,
        error_line(error),
        "" if final else "; it will be retried",
        exc_info=error,
        extra={"task_id": claimed.id, "task_path": claimed.task_path, "attempt": claimed.attempts},
    )


def timed_out_attempt(job: Job, what_happened: str) -> Outcome:
    error = TaskTimeout(
        f"{job.claimed.task_path} ran longer than its timeout of {job.timeout} s; {what_happened}."
    )
    return failed_attempt(job.claimed, job.task, error, job.started)


def crashed_attempt(job: Job, crash_retries: int, what_happened: str) -> Outcome:
    """The process running the attempt died before reporting on it (SIGKILL,
    the OOM killer, a segfault): a crash, under the same policy as a worker
    whose lease ran out (the stores' recovery). While the task has crashed
    fewer than ``crash_retries`` times, it runs again at once without using
    its own retries (max_attempts grows by one, as in recovery); after that a
    crash is an ordinary failure, which only the task's retries can cover."""
    claimed = job.claimed
    crashes = sum(e.get("exception_class_path") == WORKER_LOST for e in claimed.errors)
    error = WorkerLost(f"{what_happened} during attempt {claimed.attempts}")
    rescued = crashes < crash_retries
    if rescued:
        claimed.max_attempts += 1  # written back with the retry
    else:
        error.add_note(
            f"The task has crashed {crashes + 1} times; the {crash_retries} re-run(s) "
            "of crash_retries are used up, so this crash counts against its max_retries."
        )
    outcome = failed_attempt(claimed, job.task, error, job.started)
    if rescued:
        outcome.retry_at = outcome.finished_at  # at once: the crash was not the task's doing
    return outcome


def aborted_attempt(job: Job, what_happened: str) -> Outcome:
    """The attempt was stopped because someone asked: CANCELLED, not retried."""
    error = TaskAborted(f"{job.claimed.task_path} was aborted; {what_happened}.")
    outcome = failed_attempt(job.claimed, job.task, error, job.started)
    return cancelled_when_aborted(outcome)


def cancelled_when_aborted(outcome: Outcome) -> Outcome:
    """How an attempt that was asked to stop ended: SUCCESSFUL if it finished
    anyway, else CANCELLED, whatever it raised: never retried."""
    if outcome.status in ("FAILED", Outcome.RETRY):
        outcome.status, outcome.retry_at = "CANCELLED", None
    return outcome


def unstorable_outcome(outcome: Outcome, refusal: Exception) -> Outcome:
    """What to record instead of an ``outcome`` the store refused: no return
    value, and an error saying why it could not be stored. A success becomes
    a failure; a retry, a cancel or a failure stays one."""
    ended = (
        f"it raised {outcome.error_line}"
        if outcome.error_line
        else f"it ended {outcome.status.lower()}"
    )
    error = OutcomeNotStored(
        f"The outcome of this attempt could not be stored ({ended}); "
        f"the store said: {error_line(refusal)}"
    )
    return replace(
        outcome,
        status="FAILED" if outcome.status == "SUCCESSFUL" else outcome.status,
        return_value=None,
        error=error_from(error, error_line(error)),
        error_line=error_line(error),
    )
