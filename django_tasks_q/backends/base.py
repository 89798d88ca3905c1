"""The ``django.tasks`` backend every store shares.

``QueueBackend`` is what application code talks to (``enqueue``,
``get_result``, ``result.cancel()``, ``result.wait()``): one enqueue pipeline
(validate, encode, ids, times, unique keys, signals) for every store, the
results built one way, the options read and checked one way. A store
subclasses it and adds what only it can do: ``write`` a prepared batch, read a
result back, cancel and abort, and the two halves of the contract
(``contract.WorkerStore`` for the worker, ``contract.QueueFigures`` for
operators). The models are never imported here: see ``contract.py``.
"""

import asyncio
import os
import time
import warnings
from abc import abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, ClassVar

import django
from django.apps import apps
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from ..checks import (
    Option,
    count,
    database_alias,
    duration,
    duration_or_none,
    module_names,
    positive_seconds,
    read_options,
)
from ..compat import (
    BaseTaskBackend,
    InvalidTask,
    Task,
    TaskError,
    TaskResultDoesNotExist,
    task_backends,
    task_enqueued,
)
from ..exceptions import TaskModuleNotLoaded, TaskNotRegistered
from ..groups import GroupProgress, GroupResult
from ..ids import uuid7
from ..limits import QueueLimit, limit_keys, queue_limits
from ..payloads import derived_unique_key, encode_calls
from ..registry import loaded_by_workers, resolve
from ..task import Call, QTask, QTaskResult, as_delay, as_qtask
from ..tracing import enqueue_span
from .contract import (
    ClaimedTask,
    EnqueueBatch,
    Outcome,
    QueueFigures,
    TaskStatus,
    WorkerStore,
    django_status,
    stored_errors,
)

# The options every backend has (contract.WorkerStore says what they are for).
DATABASE = Option("database", "default", database_alias, "django_tasks_q.E002")
POLL_INTERVAL = Option("poll_interval", 1.0, positive_seconds, "django_tasks_q.E005")
LEASE = Option("lease", 60, duration, "django_tasks_q.E005")
# How many times a task whose worker died (its lease ran out) runs again
# without using its own retries: a crash is seldom the task's fault.
CRASH_RETRIES = Option("crash_retries", 2, count)
# More modules of tasks for the worker to import, besides each app's "tasks".
TASK_MODULES = Option("task_modules", (), module_names)
# Concurrency and rate limits per queue: {"emails": {"concurrency": 5, "rate_limit": "20/s"}}.
QUEUE_LIMITS = Option("queue_limits", {}, queue_limits)


def result_ttl(default: float | None) -> Option:
    """How long a finished task's result is kept; None: for ever."""
    return Option("result_ttl", default, duration_or_none, "django_tasks_q.E008")


# The database errors that may pass if tried again; see transient_errors.
TRANSIENT_DATABASE_ERRORS = (OperationalError, InterfaceError)

# Where a warning about the caller's code is not reported from.
PACKAGE_DIRECTORY = os.path.dirname(os.path.dirname(__file__))

INSTALL_HINT = "Add 'django_tasks_q' to INSTALLED_APPS and run manage.py migrate."


def deadline_after(timeout: float | None) -> float | None:
    """``timeout`` seconds from now on the monotonic clock; None for no limit."""
    return None if timeout is None else time.monotonic() + timeout


def time_left(deadline: float | None) -> float | None:
    return None if deadline is None else max(deadline - time.monotonic(), 0.0)


def _next_poll(result_id: str, deadline: float | None, delay: float) -> float:
    """How long to sleep before looking again; TimeoutError past the deadline."""
    left = time_left(deadline)
    if left is None:
        return delay
    if left <= 0:
        raise TimeoutError(f"Task {result_id} has not finished yet.")
    return min(delay, left)


def deferred_to(run_after: datetime, enqueued_at: datetime) -> datetime | None:
    """A result's ``task.run_after`` for a row: the absolute time it waits for,
    or None when it was due at once (a store's rows hold ``enqueued_at`` then)."""
    return run_after if run_after > enqueued_at else None


@dataclass(frozen=True, slots=True, kw_only=True)
class UnregisteredTask(QTask[..., None]):
    """The stand-in for a row's task that this process does not know (removed
    in a deploy, say): never validated against QUEUES or the path's shape,
    since it is never enqueued, only shown in a result."""

    def __post_init__(self) -> None:
        pass


def _unregistered_task(task_path: str) -> QTask:
    """A stand-in for results whose task this process does not know."""

    def unregistered(*args: Any, **kwargs: Any) -> None:
        raise TaskNotRegistered(f"{task_path!r} is not a registered task.")

    unregistered.__module__, _, unregistered.__qualname__ = task_path.rpartition(".")
    unregistered.__name__ = unregistered.__qualname__
    return UnregisteredTask(func=unregistered)


def queue_backends() -> dict[str, "QueueBackend"]:
    """Every backend in TASKS that has a queue to report on, by alias."""
    backends: dict[str, QueueBackend] = {}
    for alias in task_backends:
        backend = task_backends[alias]
        if isinstance(backend, QueueBackend):
            backends[alias] = backend
    return backends


class QueueBackend(BaseTaskBackend, WorkerStore, QueueFigures):
    task_class = QTask
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True
    # Whether @periodic may target it: a tick's state (the Schedule table) and
    # its task must commit in one transaction.
    supports_periodic = False
    supports_after = False  # whether tasks can wait for others: QTask.after()
    supports_unique = False  # whether tasks can have unique keys
    supports_groups = False  # whether calls can be enqueued as a group: enqueue_group()
    # What a worker waits out and tries again: a lost or refused connection, a
    # lock timeout, a serialization failure or deadlock (OperationalError).
    # Any other error (DataError, IntegrityError, ...) would fail again.
    transient_errors: tuple[type[BaseException], ...] = TRANSIENT_DATABASE_ERRORS
    # The backend's OPTIONS; each becomes an attribute of the same name.
    declared_options: ClassVar[tuple[Option, ...]] = (
        DATABASE,
        POLL_INTERVAL,
        LEASE,
        CRASH_RETRIES,
        TASK_MODULES,
        QUEUE_LIMITS,
    )

    # The DATABASES alias whose transactions enqueue() joins, and where the
    # backend's tables are: the queue itself, or (Redis) copies of results.
    database: str
    poll_interval: float
    lease: timedelta
    crash_retries: int
    result_ttl: timedelta | None
    task_modules: tuple[str, ...]
    queue_limits: dict[str, QueueLimit]

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        values, self._option_messages = read_options(alias, self.options, self.declared_options)
        self._installed = False  # the app, as far as we know yet
        self._tasks_seen: set[str] = set()  # whose module was looked at: see prepare()
        for name, value in values.items():
            setattr(self, name, value)

    @property
    def queue_tables(self) -> str | None:
        """The DATABASES alias whose Task and TaskResult tables hold this
        backend's queue (for the admin's lists and ``taskq list``); None when
        the queue is elsewhere."""
        return None

    @property
    def tables_database(self) -> str | None:
        """The DATABASES alias whose tables of this app the worker uses (so
        they must be migrated before it starts); None if it uses none."""
        return self.queue_tables

    def _not_installed(self) -> str | None:
        """What is wrong if the app is not installed, else None."""
        if self._installed or apps.is_installed("django_tasks_q"):
            self._installed = True
            return None
        return (
            f"TASKS[{self.alias!r}] uses {type(self).__name__}, but "
            "'django_tasks_q' is not in INSTALLED_APPS."
        )

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        messages: list[checks.CheckMessage] = []
        if problem := self._not_installed():
            messages.append(checks.Error(problem, hint=INSTALL_HINT, id="django_tasks_q.E001"))
        return messages + sorted(self._option_messages, key=lambda message: message.id or "")

    # -- enqueueing: one pipeline for every store ------------------------------------

    def validate_task(self, task: Task) -> None:
        task = as_qtask(task)
        if task.waits_for and not self.supports_after:
            raise InvalidTask(
                f"{type(self).__name__} does not support after() (chains); "
                "use the database backend for tasks that wait for others."
            )
        if not self.supports_unique and (task.unique or task.unique_key is not None):
            raise InvalidTask(
                f"{type(self).__name__} does not support unique tasks (unique, "
                "unique_key); use a database backend for them."
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

    def enqueue(self, task: Task, args: Sequence[Any], kwargs: dict[str, Any]) -> QTaskResult:
        return self.enqueue_many(task, [Call(tuple(args), kwargs)])[0]

    def enqueue_many(self, task: Task, calls: Iterable[Any]) -> list[QTaskResult]:
        """Enqueue many calls of ``task`` at once; see ``QTask.enqueue_many``."""
        batch = self.prepare(task, calls)
        with enqueue_span(batch):
            return self.write(batch)

    def enqueue_group(self, task: Task, calls: Iterable[Any]) -> GroupResult:
        """Enqueue ``calls`` of ``task`` as one group; see ``QTask.enqueue_group``."""
        self._check_groups()
        task = as_qtask(task)
        if task.unique or task.unique_key is not None:
            # A call whose key is held would not join the group.
            raise InvalidTask("enqueue_group(): a group's calls cannot have unique keys.")
        batch = self.prepare(task, calls)
        if not batch.ids:
            raise InvalidTask("enqueue_group() needs at least one call.")
        batch.group_id = str(uuid7())
        self.write(batch)
        return GroupResult(
            id=batch.group_id,
            backend=self.alias,
            task_path=task.module_path,
            size=len(batch.ids),
            enqueued_at=batch.enqueued_at,
        )

    def _check_groups(self) -> None:
        if not self.supports_groups:
            raise InvalidTask(
                f"{type(self).__name__} does not support groups (enqueue_group); "
                "use a database backend for them."
            )

    # What a group's result asks of its store; a store with groups overrides them.
    def get_group(self, group_id: str) -> GroupResult:
        raise TaskResultDoesNotExist(f"{type(self).__name__} has no groups: {group_id}.")

    def group_progress(self, group_id: str) -> GroupProgress:
        raise TaskResultDoesNotExist(f"{type(self).__name__} has no groups: {group_id}.")

    def cancel_group(self, group_id: str) -> int:
        raise TaskResultDoesNotExist(f"{type(self).__name__} has no groups: {group_id}.")

    def group_results(self, group_id: str) -> list[QTaskResult]:
        raise TaskResultDoesNotExist(f"{type(self).__name__} has no groups: {group_id}.")

    def wait_for_group(self, group_id: str, timeout: float | None) -> None:
        """Return once every member of the group has finished; TimeoutError
        after ``timeout`` seconds. By polling its progress, a count."""
        deadline, delay = deadline_after(timeout), self.FIRST_POLL
        while not self.group_progress(group_id).is_finished:
            left = time_left(deadline)
            if left is not None and left <= 0:
                raise TimeoutError(f"Group {group_id} has not finished yet.")
            time.sleep(delay if left is None else min(delay, left))
            delay = min(delay * 2, self.poll_interval)

    def prepare(self, task: Task, calls: Iterable[Any]) -> EnqueueBatch:
        """Check and encode ``calls`` of ``task``: everything but the writing."""
        if not self._installed and (problem := self._not_installed()):
            raise ImproperlyConfigured(f"{problem} {INSTALL_HINT}")
        task = as_qtask(task)
        self.validate_task(task)
        if task.module_path not in self._tasks_seen:
            self._tasks_seen.add(task.module_path)
            self._warn_unless_loaded(task)
        encoded = encode_calls(task, calls)
        now = timezone.now()
        run_after = self._run_after(task, now)
        if task.run_after is not None and task.run_after != run_after:
            # The results show the time the task waits for, not the delay.
            task = replace(task, run_after=run_after)
        expires_at = self._expires_at(task, run_after, now)
        keys = self._unique_keys(task, encoded)
        batch = EnqueueBatch(
            task=task,
            ids=[str(uuid7()) for _ in encoded],
            args=[args for args, _ in encoded],
            kwargs=[kwargs for _, kwargs in encoded],
            enqueued_at=now,
            run_after=run_after,
            expires_at=expires_at,
            max_attempts=task.max_retries + 1,
            unique_keys=keys,
            waits_for=task.waits_for,
            run_on=task.run_on,
            limit_keys=limit_keys(task, encoded),
        )
        batch.results = [
            self.ready_result(batch, index, None if keys is None else keys[index])
            for index in range(len(encoded))
        ]
        return batch

    def _warn_unless_loaded(self, task: QTask) -> None:
        """Warn if no worker loads the module ``task`` is in: it would enqueue
        fine, then fail with TaskNotRegistered."""
        module = task.func.__module__
        if loaded_by_workers(module, self.task_modules):
            return
        warnings.warn(
            f"{task.module_path} is in module {module!r}, which no worker loads: workers "
            "import the 'tasks' module of each installed app and the modules listed in "
            f"TASKS[{self.alias!r}]['OPTIONS']['task_modules']. Move the task to a tasks "
            f"module, or add {module!r} to task_modules.",
            TaskModuleNotLoaded,
            skip_file_prefixes=(os.path.dirname(django.__file__), PACKAGE_DIRECTORY),
        )

    def ready_result(self, batch: EnqueueBatch, index: int, unique_key: str | None) -> QTaskResult:
        """What enqueue() returns for call ``index`` of ``batch``."""
        return self.make_result(
            task=batch.task,
            id=batch.ids[index],
            status=TaskStatus.READY,
            enqueued_at=batch.enqueued_at,
            started_at=None,
            last_attempted_at=None,
            finished_at=None,
            args=batch.args[index],
            kwargs=batch.kwargs[index],
            worker_ids=[],
            unique_key=unique_key,
            expires_at=batch.expires_at,
        )

    @abstractmethod
    def write(self, batch: EnqueueBatch) -> list[QTaskResult]:
        """Queue ``batch`` (joining, or waiting for, the caller's transaction on
        ``database``) and call ``announce()`` once its tasks are in the store.
        Returns ``batch.results``, with those of calls not queued (a unique
        key already held) replaced by the holders' results."""

    def announce(self, results: Iterable[QTaskResult]) -> None:
        """Send ``task_enqueued`` for the tasks that were queued."""
        for result in results:
            if result.created:
                task_enqueued.send(type(self), task_result=result)

    def _run_after(self, task: Task, now: datetime) -> datetime:
        if task.run_after is None:
            return now
        delay = as_delay(task.run_after)
        return task.run_after if delay is None else now + delay

    def _expires_at(self, task: QTask, run_after: datetime, now: datetime) -> datetime | None:
        """The deadline for starting ``task`` enqueued at ``now``, if it has one."""
        if task.expires_at is None:
            expires = None if task.expires is None else as_delay(task.expires)
            return None if expires is None else run_after + expires
        delay = as_delay(task.expires_at)
        deadline = now + delay if delay is not None else task.expires_at
        assert isinstance(deadline, datetime)  # QTask._check_expiry() made sure
        if deadline <= run_after:
            raise InvalidTask(
                f"expires_at ({deadline.isoformat()}) must be after run_after "
                f"({run_after.isoformat()}): the task could never start."
            )
        return deadline

    def _unique_keys(
        self, task: QTask, encoded: list[tuple[list[Any], dict[str, Any]]]
    ) -> list[str] | None:
        """Each call's unique key, or None for a task without keys.

        An explicit ``unique_key`` is every call's key; ``unique=True`` derives
        one per call from the task's path and its JSON arguments.
        """
        if task.unique_key is not None:
            return [task.unique_key] * len(encoded)
        if not task.unique:
            return None
        return [derived_unique_key(task, args, kwargs) for args, kwargs in encoded]

    # -- reading results back ----------------------------------------------------------

    @abstractmethod
    def get_result(self, result_id: str) -> QTaskResult: ...

    @abstractmethod
    def cancel(self, result_id: str) -> bool:
        """Cancel the task if it is waiting: it never runs, and is recorded as
        CANCELLED. False if it is running, finished or unknown."""

    @abstractmethod
    def abort(self, result_id: str) -> bool:
        """Cancel the task if it is waiting; if it is running, ask its worker
        to stop it. False if it finished or is unknown."""

    # Waiting for a result by polling: the first look comes this soon (in
    # seconds), then each wait doubles, up to poll_interval.
    FIRST_POLL = 0.01

    def wait_for_result(self, result_id: str, timeout: float | None) -> None:
        """Return once the task has finished; TimeoutError after ``timeout``
        seconds. Here by polling; a store that can be woken does better."""
        deadline, delay = deadline_after(timeout), self.FIRST_POLL
        while not self.get_result(result_id).is_finished:
            time.sleep(_next_poll(result_id, deadline, delay))
            delay = min(delay * 2, self.poll_interval)

    async def async_wait_for_result(self, result_id: str, timeout: float | None) -> None:
        """``wait_for_result()`` for async code."""
        deadline, delay = deadline_after(timeout), self.FIRST_POLL
        while not (await self.aget_result(result_id)).is_finished:
            await asyncio.sleep(_next_poll(result_id, deadline, delay))
            delay = min(delay * 2, self.poll_interval)

    def resolve_task(
        self, task_path: str, priority: int, queue_name: str, run_after: datetime | None = None
    ) -> QTask:
        """The registered task for a row, carrying the row's priority, queue and
        ``run_after`` (see ``deferred_to``)."""
        try:
            task = resolve(task_path)
        except TaskNotRegistered:
            task = _unregistered_task(task_path)
        row = (priority, queue_name, self.alias, run_after)
        if (task.priority, task.queue_name, task.backend, task.run_after) == row:
            return task
        try:
            return task.using(
                priority=priority, queue_name=queue_name, backend=self.alias, run_after=run_after
            )
        except InvalidTask:  # e.g. the queue was since removed from QUEUES
            return task

    def make_result(
        self,
        *,
        task: Task,
        id: str,
        status: str,
        return_value: Any = None,
        errors: Iterable[dict[str, str]] = (),
        **fields: Any,
    ) -> QTaskResult:
        """The API's result for a task in any state, from what a store holds."""
        result = QTaskResult(
            task=task,
            id=id,
            status=django_status(status),
            backend=self.alias,
            errors=_task_errors(errors),
            **fields,
        )
        object.__setattr__(result, "_return_value", return_value)
        return result

    def result_for_claimed(self, claimed: ClaimedTask, task: Task) -> QTaskResult:
        """The API's view of a claimed task, running: for task_started."""
        return self.make_result(
            task=task,
            id=claimed.id,
            status=TaskStatus.RUNNING,
            errors=claimed.errors,
            enqueued_at=claimed.enqueued_at,
            started_at=claimed.started_at,
            last_attempted_at=claimed.last_attempted_at,
            finished_at=None,
            args=claimed.args,
            kwargs=claimed.kwargs,
            worker_ids=list(claimed.worker_ids),
        )

    def end_result(self, result: QTaskResult, outcome: Outcome) -> QTaskResult:
        """``result`` (``result_for_claimed``'s) changed in place to how
        ``outcome`` ended the task, as ``refresh()`` changes a result: the
        object task_started was sent with is the one task_finished is sent
        with, built once (its arguments are normalised once, not twice)."""
        ended = {
            "status": django_status(outcome.status),
            "finished_at": outcome.finished_at,
            "errors": _task_errors(outcome.errors),
            "_return_value": outcome.return_value,
        }
        for name, value in ended.items():
            object.__setattr__(result, name, value)
        return result


def _task_errors(errors: Iterable[dict[str, str]]) -> list[TaskError]:
    """A result's ``errors``, from a task's stored ones."""
    return [
        TaskError(exception_class_path=e["exception_class_path"], traceback=e["traceback"])
        for e in stored_errors(list(errors))
    ]
