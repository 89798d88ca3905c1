"""The contract every django-tasks-q backend fulfils.

Two halves: the ``django.tasks`` API that application code calls (``enqueue``,
``get_result``), and the small store API the worker calls (``claim``,
``record``, ``release``), with the figures the dashboard, ``taskq`` and the
metrics read (``queue_stats``, ``workers``). A backend is one class that
implements the store; the worker, retries and signals are shared.
"""

import asyncio
import hashlib
import inspect
import json
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from django.apps import apps
from django.core import checks
from django.db import Error as DatabaseError
from django.tasks import TaskResultStatus
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.base import TaskError
from django.tasks.exceptions import InvalidTask
from django.utils.json import normalize_json

from ..exceptions import InvalidTaskArguments, TaskNotRegistered
from ..models import ResultStatus
from ..registry import resolve
from ..task import Call, QTask, QTaskResult, as_delay

# Our final states, as Django's four-state API reports them.
DJANGO_STATUS = {
    "READY": TaskResultStatus.READY,
    "RUNNING": TaskResultStatus.RUNNING,
    "WAITING": TaskResultStatus.READY,  # for other tasks: not started yet
    ResultStatus.SUCCESSFUL: TaskResultStatus.SUCCESSFUL,
    ResultStatus.FAILED: TaskResultStatus.FAILED,
    ResultStatus.CANCELLED: TaskResultStatus.FAILED,
    ResultStatus.EXPIRED: TaskResultStatus.FAILED,
}


@dataclass(slots=True)
class ClaimedTask:
    """A task a worker holds: what it needs to run it and report on it."""

    id: str
    task_path: str
    queue_name: str
    priority: int
    args: list
    kwargs: dict
    attempts: int  # including the one being made now
    max_attempts: int
    errors: list[dict]
    worker_ids: list[str]
    enqueued_at: datetime
    started_at: datetime
    last_attempted_at: datetime


@dataclass(slots=True)
class Outcome:
    """How one attempt ended: ``status`` is a ResultStatus, or ``RETRY``."""

    RETRY = "RETRY"

    claimed: ClaimedTask
    status: str
    finished_at: datetime
    duration: float  # seconds
    return_value: Any = None  # already JSON-normalised
    error: dict | None = None  # {"exception_class_path", "traceback"}
    retry_at: datetime | None = None

    @property
    def errors(self) -> list[dict]:
        """The task's errors including this attempt's."""
        return self.claimed.errors + [self.error] if self.error else self.claimed.errors


def json_round_trip(value):
    """``value`` as it comes back from JSON, or TypeError saying why it can't."""
    try:  # Plain JSON already (the usual case): C-speed, no normalising to do.
        decoded = json.loads(json.dumps(value, allow_nan=False))
        if decoded == value:
            return decoded
    except (TypeError, ValueError):
        pass
    try:
        normalised = normalize_json(value)
        encoded = json.dumps(normalised, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise TypeError(str(error)) from None
    if json.loads(encoded) != normalised:
        raise TypeError("it changes in a JSON round trip (non-string keys?)")
    return normalised


def _canonical_json(value) -> bytes:
    """The same bytes for equal JSON values, whatever their dicts' order."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _positional_names(task, count: int) -> list[str]:
    """How to name each of ``count`` positional arguments in an error."""
    names = []
    parameters = list(inspect.signature(task.func).parameters.values())
    if task.takes_context:
        parameters = parameters[1:]
    for parameter in parameters:
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            names.append(repr(parameter.name))
        elif parameter.kind == parameter.VAR_POSITIONAL:
            names += [f"*{parameter.name}[{i}]" for i in range(count - len(names))]
    return names + [f"#{i}" for i in range(len(names), count)]


def encode_arguments(task, args, kwargs) -> tuple[list, dict]:
    """JSON-normalise ``args`` and ``kwargs``, naming any argument that can't be."""
    args, kwargs = list(args), dict(kwargs)
    try:
        return tuple(json_round_trip([args, kwargs]))
    except TypeError:
        pass
    # Something in there is not plain JSON: find it to say which.
    names = _positional_names(task, len(args))
    labelled = [(f"argument {names[i]} (position {i})", value) for i, value in enumerate(args)] + [
        (f"argument {name!r}", value) for name, value in kwargs.items()
    ]
    for label, value in labelled:
        try:
            json_round_trip(value)
        except TypeError as problem:
            raise InvalidTaskArguments(
                f"Cannot enqueue {task.module_path}: {label} is not "
                f"JSON-serialisable: {problem}. Task arguments must be JSON "
                "(str, int, float, bool, None, list, dict with string keys)."
            ) from None
    raise InvalidTaskArguments(f"Cannot enqueue {task.module_path}: arguments are not JSON.")


def deadline_after(timeout: float | None) -> float | None:
    """``timeout`` seconds from now on the monotonic clock; None for no limit."""
    return None if timeout is None else time.monotonic() + timeout


def time_left(deadline: float | None) -> float | None:
    return None if deadline is None else max(deadline - time.monotonic(), 0.0)


def _next_poll(result_id, deadline: float | None, delay: float) -> float:
    """How long to sleep before looking again; TimeoutError past the deadline."""
    left = time_left(deadline)
    if left is None:
        return delay
    if left <= 0:
        raise TimeoutError(f"Task {result_id} has not finished yet.")
    return min(delay, left)


def error_from(exception: BaseException, traceback: str) -> dict:
    cls = type(exception)
    return {
        "exception_class_path": f"{cls.__module__}.{cls.__qualname__}",
        "traceback": traceback,
    }


def _unregistered_task(task_path: str):
    """A stand-in for results whose task this process does not know."""

    def unregistered(*args, **kwargs):
        raise TaskNotRegistered(f"{task_path!r} is not a registered task.")

    unregistered.__module__, _, unregistered.__qualname__ = task_path.rpartition(".")
    unregistered.__name__ = unregistered.__qualname__
    return QTask(func=unregistered)


class QueueBackend(BaseTaskBackend):
    task_class = QTask
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True
    # Whether @periodic may target it: a tick's state (the Schedule table) and
    # its task must commit in one transaction.
    supports_periodic = False
    # Whether tasks can wait for others: QTask.after() (chains).
    supports_after = False
    # What the worker treats as the store being briefly unreachable: it logs
    # them, backs off and tries again, keeping what it could not record.
    transient_errors: tuple[type[BaseException], ...] = (DatabaseError,)

    def __init__(self, alias, params):
        super().__init__(alias, params)
        # Seconds an idle worker waits between looks for tasks (when nothing
        # wakes it sooner), and how long a claim holds without renewal.
        self.poll_interval = float(self.options.get("poll_interval", 1.0))
        self.lease = timedelta(seconds=float(self.options.get("lease", 60)))

    def check(self, **kwargs):
        errors = []
        if not apps.is_installed("django_tasks_q"):
            errors.append(
                checks.Error(
                    f"TASKS[{self.alias!r}] uses {type(self).__name__}, but "
                    "'django_tasks_q' is not in INSTALLED_APPS.",
                    id="django_tasks_q.E001",
                )
            )
        if self.poll_interval <= 0 or self.lease.total_seconds() <= 0:
            errors.append(
                checks.Error(
                    f"TASKS[{self.alias!r}]['OPTIONS']: poll_interval and lease "
                    "must be positive numbers of seconds.",
                    id="django_tasks_q.E005",
                )
            )
        return errors

    def validate_task(self, task):
        if getattr(task, "waits_for", ()) and not self.supports_after:
            raise InvalidTask(
                f"{type(self).__name__} does not support after() (chains); "
                "use the database backend for tasks that wait for others."
            )
        delay = as_delay(task.run_after)
        if delay is not None:
            if delay < timedelta(0):
                raise InvalidTask(f"run_after must not be a negative delay ({task.run_after!r}).")
            # Validate the rest; replace() runs validate_task() again.
            replace(task, run_after=None)
            return
        if task.run_after is not None and not isinstance(task.run_after, datetime):
            raise InvalidTask(
                "run_after must be a datetime, a timedelta or a number of seconds, "
                f"not {task.run_after!r}."
            )
        super().validate_task(task)

    def enqueue_many(self, task, calls) -> list[QTaskResult]:
        """Enqueue many calls of ``task`` at once; see ``QTask.enqueue_many``."""
        raise NotImplementedError

    def encode_calls(self, task, calls) -> list[tuple[list, dict]]:
        """Each call as JSON (args, kwargs); every call is checked before any is queued.

        A call is a tuple or list of positional arguments, or a dict of keyword
        arguments, or an ``(args, kwargs)`` pair given as ``Call(args, kwargs)``.
        """
        pairs = []
        for index, call in enumerate(calls):
            if isinstance(call, Call):
                pairs.append([list(call.args), dict(call.kwargs)])
            elif isinstance(call, dict):
                pairs.append([[], dict(call)])
            elif isinstance(call, (tuple, list)):
                pairs.append([list(call), {}])
            else:
                raise InvalidTaskArguments(
                    f"Call #{index} of {task.module_path} is a {type(call).__name__}; "
                    "give a tuple of arguments, a dict of keyword arguments, or a Call."
                )
        try:  # the whole batch at once
            return [(args, kwargs) for args, kwargs in json_round_trip(pairs)]
        except TypeError:
            pass
        for index, (args, kwargs) in enumerate(pairs):  # find the culprit to name it
            try:
                encode_arguments(task, args, kwargs)
            except InvalidTaskArguments as error:
                if len(pairs) > 1:
                    error.args = (f"Call #{index}: {error}",)
                raise
        raise InvalidTaskArguments(f"Cannot enqueue {task.module_path}: arguments are not JSON.")

    def run_after_for(self, task, now: datetime) -> datetime:
        if task.run_after is None:
            return now
        delay = as_delay(task.run_after)
        return task.run_after if delay is None else now + delay

    def expires_at_for(self, task, run_after: datetime, now: datetime) -> datetime | None:
        """The deadline for starting ``task`` enqueued at ``now``, if it has one."""
        deadline = getattr(task, "expires_at", None)
        if deadline is None:
            expires = getattr(task, "expires", None)
            return None if expires is None else run_after + as_delay(expires)
        delay = as_delay(deadline)
        if delay is not None:
            deadline = now + delay
        if deadline <= run_after:
            raise InvalidTask(
                f"expires_at ({deadline.isoformat()}) must be after run_after "
                f"({run_after.isoformat()}): the task could never start."
            )
        return deadline

    def unique_keys(self, task, calls) -> list[str] | None:
        """Each call's unique key, or None for a task without keys.

        An explicit ``unique_key`` is every call's key; ``unique=True`` derives
        one per call from the task's path and its JSON arguments, so the same
        arguments given the same way make the same key.
        """
        if getattr(task, "unique_key", None) is not None:
            return [task.unique_key] * len(calls)
        if not getattr(task, "unique", False):
            return None
        return [
            f"{task.module_path}:{hashlib.sha256(_canonical_json([args, kwargs])).hexdigest()}"
            for _, args, kwargs in calls
        ]

    # Waiting for a result by polling: the first look comes this soon (in
    # seconds), then each wait doubles, up to poll_interval.
    FIRST_POLL = 0.01

    def wait_for_result(self, result_id, timeout: float | None) -> None:
        """Return once the task has finished; TimeoutError after ``timeout``
        seconds. Here by polling; a store that can be woken does better."""
        deadline, delay = deadline_after(timeout), self.FIRST_POLL
        while not self.get_result(result_id).is_finished:
            time.sleep(_next_poll(result_id, deadline, delay))
            delay = min(delay * 2, self.poll_interval)

    async def async_wait_for_result(self, result_id, timeout: float | None) -> None:
        """``wait_for_result()`` for async code."""
        deadline, delay = deadline_after(timeout), self.FIRST_POLL
        while not (await self.aget_result(result_id)).is_finished:
            await asyncio.sleep(_next_poll(result_id, deadline, delay))
            delay = min(delay * 2, self.poll_interval)

    # -- the worker's half: implemented by each store ------------------------

    def record_and_claim(
        self, outcomes: list[Outcome], queues: list[str] | None, limit: int, worker_id: str
    ) -> tuple[list[Outcome], list[ClaimedTask]]:
        """Store ``outcomes`` (returning those of tasks ``worker_id`` still
        held), then take up to ``limit`` ready tasks from ``queues`` (None: any
        queue) for ``worker_id``. One call, so a store can do both at once."""
        raise NotImplementedError

    def release(self, task_ids: list[str], worker_id: str) -> None:
        """Hand tasks back unfinished, so another worker takes them at once."""
        raise NotImplementedError

    def register_worker(self, worker_id: str, *, queues, concurrency: int, pool: str) -> None:
        """Add the worker to the registry the admin and CLI read."""
        raise NotImplementedError

    def heartbeat(self, worker_id: str, task_ids: list[str]) -> bool:
        """Renew the leases of ``task_ids`` (the tasks the worker holds) and its
        registry entry; False if the entry was gone (it was taken for dead)."""
        raise NotImplementedError

    def recover(self) -> int:
        """Requeue (or, out of attempts, fail) tasks whose lease expired, and
        forget dead workers. Any worker may call it; returns tasks recovered."""
        raise NotImplementedError

    def expire_tasks(self) -> int:
        """Record waiting tasks past their deadline (``expires_at``) as EXPIRED,
        in batches. Any worker may call it; returns how many."""
        raise NotImplementedError

    def unregister_worker(self, worker_id: str) -> None:
        raise NotImplementedError

    def prune_results(self, limit: int = 1000) -> int:
        """Delete up to ``limit`` results older than the backend's retention;
        returns how many. Stores whose results expire by themselves do nothing."""
        return 0

    def aborts_requested(self, worker_id: str, task_ids: list[str]) -> list[str]:
        """Those of ``task_ids`` (tasks ``worker_id`` holds) someone asked to abort."""
        raise NotImplementedError

    def listen(self, queues: list[str] | None, wake, *, worker_id=None, on_abort=None):
        """Start calling ``wake()`` when tasks for ``queues`` arrive, and
        ``on_abort()`` when someone asks to abort a task ``worker_id`` holds;
        return something with ``stop()``, or None where only polling works."""
        return None

    # -- cancelling and aborting (``QTaskResult.cancel()`` / ``abort()``) ------

    def cancel(self, result_id: str) -> bool:
        """Cancel the task if it is waiting: it never runs, and is recorded as
        CANCELLED. False if it is running, finished or unknown."""
        raise NotImplementedError

    def abort(self, result_id: str) -> bool:
        """Cancel the task if it is waiting; if it is running, ask its worker
        to stop it. False if it finished or is unknown."""
        raise NotImplementedError

    # -- how the queue is doing: for the dashboard, taskq and the metrics ----

    def queue_stats(self, queues=(), *, now=None, buckets=60) -> list:
        """A ``stats.QueueStats`` per queue, sorted by name: tasks waiting,
        scheduled and running, failed in the last hour, the longest wait, and
        tasks finished in each of the last ``buckets`` minutes. ``queues`` are
        listed even when empty (pass the backend's QUEUES)."""
        raise NotImplementedError

    def finished_counts(self, since: datetime, now: datetime) -> dict[tuple[str, str], int]:
        """How many tasks finished since ``since``, by (queue, status)."""
        raise NotImplementedError

    def run_times(self, since: datetime, bounds) -> dict[str, tuple[list[int], int, float]]:
        """Per queue, for the tasks that ran and finished since ``since``: how
        many ran for at most each of ``bounds`` seconds, how many in all, and
        their summed seconds. Stores that keep no run times return {}."""
        return {}

    def workers(self, now=None) -> list:
        """The registry, as ``stats.WorkerEntry``s sorted by host and start."""
        raise NotImplementedError

    def purge(self, queue_name: str) -> int:
        """Delete every waiting (ready or scheduled) task of ``queue_name``;
        running ones finish as usual. Returns how many were deleted."""
        raise NotImplementedError

    # -- building the API's TaskResult ----------------------------------------

    def resolve_task(self, task_path: str, priority: int, queue_name: str):
        """The registered task for a row, carrying the row's priority and queue."""
        try:
            task = resolve(task_path)
        except TaskNotRegistered:
            task = _unregistered_task(task_path)
        if (task.priority, task.queue_name, task.backend) == (priority, queue_name, self.alias):
            return task
        try:
            return task.using(priority=priority, queue_name=queue_name, backend=self.alias)
        except InvalidTask:  # e.g. the queue was since removed from QUEUES
            return task

    def make_result(
        self, *, task, id, status, return_value=None, errors=(), **fields
    ) -> QTaskResult:
        result = QTaskResult(
            task=task,
            id=id,
            status=DJANGO_STATUS[status],
            backend=self.alias,
            errors=[
                TaskError(
                    exception_class_path=e["exception_class_path"],
                    traceback=e["traceback"],
                )
                for e in errors
            ],
            **fields,
        )
        object.__setattr__(result, "_return_value", return_value)
        return result

    def ready_results(self, task, calls, now, **fields) -> list[QTaskResult]:
        """What ``enqueue_many`` returns: one READY result per (id, args, kwargs);
        ``fields``: more QTaskResult fields, the same for each."""
        return [
            self.make_result(
                task=task,
                id=str(task_id),
                status="READY",
                enqueued_at=now,
                started_at=None,
                last_attempted_at=None,
                finished_at=None,
                args=args,
                kwargs=kwargs,
                worker_ids=[],
                **fields,
            )
            for task_id, args, kwargs in calls
        ]

    def result_for_claimed(
        self, claimed: ClaimedTask, task, outcome: Outcome | None = None
    ) -> QTaskResult:
        """The API's view of a claimed task: running, or ended as ``outcome`` says."""
        if outcome is None:
            status, finished_at, errors = "RUNNING", None, claimed.errors
        elif outcome.status == Outcome.RETRY:
            status, finished_at, errors = "READY", None, outcome.errors
        else:
            status, finished_at, errors = outcome.status, outcome.finished_at, outcome.errors
        return self.make_result(
            task=task,
            id=claimed.id,
            status=status,
            return_value=outcome.return_value if outcome else None,
            errors=errors,
            enqueued_at=claimed.enqueued_at,
            started_at=claimed.started_at,
            last_attempted_at=claimed.last_attempted_at,
            finished_at=finished_at,
            args=claimed.args,
            kwargs=claimed.kwargs,
            worker_ids=list(claimed.worker_ids),
        )
