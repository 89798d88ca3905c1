"""``@task``: Django's ``Task`` with the options a production queue needs."""

import math
import random
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Concatenate, Literal, Protocol, cast, overload

from asgiref.sync import sync_to_async
from django.conf import settings
from django.utils import timezone

from .compat import (
    DEFAULT_TASK_BACKEND_ALIAS,
    DEFAULT_TASK_PRIORITY,
    DEFAULT_TASK_QUEUE_NAME,
    InvalidTask,
    task_backends,
)
from .compat import Task as DjangoTask
from .compat import TaskContext as DjangoTaskContext
from .compat import TaskResult as DjangoTaskResult
from .exceptions import TaskAborted
from .limits import check_task_limits, declared
from .storable import unstorable_in

if TYPE_CHECKING:
    from .groups import GroupProgress, GroupResult

UNIQUE_KEY_MAX_LENGTH = 255  # Task.unique_key's column


def as_delay(value: object) -> timedelta | None:
    """``value`` (a timedelta, or a number of seconds) as a timedelta; None
    when it is neither (a datetime, say)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise InvalidTask(f"{value} is not a number of seconds.")
    elif not isinstance(value, timedelta):
        return None
    try:  # it must end at a time a datetime can hold
        delay = value if isinstance(value, timedelta) else timedelta(seconds=value)
        datetime.now(UTC) + delay
    except OverflowError:
        raise InvalidTask(
            f"{value!r} is too long a delay: it would end outside the years 1 to 9999."
        ) from None
    return delay


# after(on=...) -> the run_on stored with the waiting task (models.RunOn).
RUN_ON = {"success": "SUCCESS", "failure": "FAILURE"}


@dataclass(frozen=True, slots=True)
class Call:
    """One call for ``enqueue_many`` with both positional and keyword arguments."""

    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


class QueueCalls(Protocol):
    """What results and tasks of this package call on their backend: a
    ``QueueBackend`` (``backends/base.py``), which task.py cannot import."""

    def cancel(self, result_id: str) -> bool: ...
    def abort(self, result_id: str) -> bool: ...
    def wait_for_result(self, result_id: str, timeout: float | None) -> None: ...
    async def async_wait_for_result(self, result_id: str, timeout: float | None) -> None: ...
    def enqueue_many(self, task: DjangoTask, calls: Iterable[Any]) -> list["QTaskResult"]: ...
    def enqueue_group(self, task: DjangoTask, calls: Iterable[Any]) -> "GroupResult": ...
    def get_group(self, group_id: str) -> "GroupResult": ...
    def group_progress(self, group_id: str) -> "GroupProgress": ...
    def wait_for_group(self, group_id: str, timeout: float | None) -> None: ...
    def cancel_group(self, group_id: str) -> int: ...
    def group_results(self, group_id: str) -> list["QTaskResult"]: ...


def queue_backend(alias: str) -> QueueCalls:
    """The backend ``alias``: a QueueBackend, as QTaskResults are only made by one
    (another backend's QTask has no enqueue_many: AttributeError, as before)."""
    return cast(QueueCalls, task_backends[alias])


# django-stubs declares TaskResult and TaskContext not frozen; Django's are.
@dataclass(frozen=True, slots=True, kw_only=True)
class QTaskResult(DjangoTaskResult):  # type: ignore[misc]
    """The ``django.tasks.TaskResult`` this package's backends return.

    Everything Django's has, plus what a production queue adds on top.
    """

    # False when enqueue() found the same work already queued under this
    # unique key: the result is then that existing task's, not a new one.
    created: bool = True
    unique_key: str | None = None  # while the task is queued
    expires_at: datetime | None = None  # not started by then: recorded as EXPIRED

    def cancel(self) -> bool:
        """Cancel the task if it has not started: it never runs, and is recorded
        as CANCELLED. Returns whether it was cancelled (False once it is
        running or finished; see ``abort()``). ``refresh()`` to see it."""
        return queue_backend(self.backend).cancel(self.id)

    def abort(self) -> bool:
        """Stop the task: cancel it if it is waiting; if it is running, ask its
        worker to stop it (see "Cancelling and aborting" in the docs' results guide).
        Returns False if the task had already finished."""
        return queue_backend(self.backend).abort(self.id)

    async def acancel(self) -> bool:
        return await sync_to_async(self.cancel)()

    async def aabort(self) -> bool:
        return await sync_to_async(self.abort)()

    def wait(self, timeout: float | None = None) -> "QTaskResult":
        """Block until the task has finished, refresh this result and return it.

        Raises ``TimeoutError`` if it has not finished after ``timeout``
        seconds (None: wait as long as it takes):

            page = fetch.enqueue(url).wait(timeout=30).return_value
        """
        queue_backend(self.task.backend).wait_for_result(self.id, timeout)
        self.refresh()
        return self

    async def async_wait(self, timeout: float | None = None) -> "QTaskResult":
        """``wait()`` for async code: ``await result.async_wait(timeout=30)``."""
        await queue_backend(self.task.backend).async_wait_for_result(self.id, timeout)
        await self.arefresh()
        return self


@dataclass(frozen=True, slots=True, kw_only=True)
class QTaskContext(DjangoTaskContext):  # type: ignore[misc]  # as QTaskResult
    """The context a task declared with ``takes_context=True`` gets from a worker.

    ``resources``: what the worker's start-up hooks returned, by hook name
    (see ``on_worker_start``). ``abort_requested``: whether someone asked
    this attempt to stop; a long task in the thread pool checks it, or calls
    ``raise_if_aborted()``, between steps.
    """

    resources: Mapping[str, Any] = field(default_factory=dict)
    abort_event: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def abort_requested(self) -> bool:
        return self.abort_event.is_set()

    def raise_if_aborted(self) -> None:
        """Raise ``TaskAborted`` if someone asked this attempt to stop."""
        if self.abort_event.is_set():
            raise TaskAborted(f"{self.task_result.task.module_path} was aborted.")


@dataclass(frozen=True, slots=True, kw_only=True)
class QTask[**P, R](DjangoTask):
    """A ``django.tasks.Task`` with retries, backoff, a timeout, unique keys
    and expiry.

    This is the ``task_class`` of this package's backends, so
    ``@django.tasks.task`` accepts these options too when it targets them.
    """

    # Django's own fields, with the defaults Django 6.1 gives them: on 6.0
    # they have none, and Django's calls and ours leave some out.
    priority: int = DEFAULT_TASK_PRIORITY
    backend: str = DEFAULT_TASK_BACKEND_ALIAS
    queue_name: str = DEFAULT_TASK_QUEUE_NAME
    run_after: datetime | None = None

    max_retries: int = 0  # retries after the first attempt
    retry_backoff: float = 1.0  # seconds before the first retry; doubles each time
    retry_backoff_max: float = 600.0  # the cap on one delay, in seconds
    retry_jitter: bool = True  # wait a random 50-100% of the delay
    timeout: float | None = None  # seconds one attempt may run
    store_result: bool = True  # False: the return value is dropped, not stored
    # Queue each call at most once at a time: its key is the task's path and a
    # hash of its arguments (see unique_key for an explicit one).
    unique: bool = False
    # The key of this call (set with using()): while a task with this key is
    # waiting or running, enqueueing it again returns that task.
    unique_key: str | None = None
    # Seconds (or a timedelta) after run_after by which an attempt must start.
    expires: float | timedelta | None = None
    # This call's deadline (set with using()): a datetime, or a delay from
    # the enqueue as a timedelta or seconds. Overrides ``expires``.
    expires_at: datetime | timedelta | float | None = None
    # Set by after(): the ids of the tasks this one waits for, and whether it
    # runs once they all succeeded ("SUCCESS") or once one did not ("FAILURE").
    waits_for: tuple[str, ...] = ()
    run_on: str = "SUCCESS"
    # At most this many running at once, across every worker (per limit key
    # if the task has one); see docs/guide/limits.md.
    concurrency: int | None = None
    # At most N starts per second, minute or hour: "N/s", "N/m" or "N/h".
    rate_limit: str | None = None
    # The limits apply per value of this: a parameter's name (its value in
    # the call) or a function of the call's arguments returning a string.
    limit_key: str | Callable[..., str] | None = None
    # This call's key (set with using(limit_key=...)), overriding limit_key.
    call_limit_key: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise InvalidTask("max_retries must be a whole number of at least 0.")
        if self.retry_backoff < 0 or self.retry_backoff_max < 0:
            raise InvalidTask("retry_backoff and retry_backoff_max must be >= 0.")
        if self.timeout is not None and self.timeout <= 0:
            raise InvalidTask("timeout must be a positive number of seconds.")
        if not isinstance(self.store_result, bool):
            raise InvalidTask("store_result must be True or False.")
        self._check_unique()
        self._check_expiry()
        check_task_limits(self)
        if self.run_on not in RUN_ON.values():
            raise InvalidTask("run_on must be 'SUCCESS' or 'FAILURE'; see after().")
        DjangoTask.__post_init__(self)
        if self.concurrency is not None or self.rate_limit is not None:
            declared.add(self.module_path)

    def _check_unique(self) -> None:
        if not isinstance(self.unique, bool):
            raise InvalidTask("unique must be True or False.")
        # A derived key is "<path>:<SHA-256 in hex>".
        if self.unique and len(self.module_path) + 65 > UNIQUE_KEY_MAX_LENGTH:
            raise InvalidTask(
                f"{self.module_path} is too long a path for derived unique keys; "
                "give each call a unique_key instead."
            )
        key = self.unique_key
        if key is None:
            return
        if not (isinstance(key, str) and 0 < len(key) <= UNIQUE_KEY_MAX_LENGTH):
            raise InvalidTask(
                f"unique_key must be a non-empty string of at most "
                f"{UNIQUE_KEY_MAX_LENGTH} characters, not {key!r}."
            )
        if problem := unstorable_in(key):
            raise InvalidTask(f"unique_key {key!r} contains {problem}, which no store can hold.")

    def _check_expiry(self) -> None:
        if self.expires is not None:
            delay = as_delay(self.expires)
            if delay is None or delay <= timedelta(0):
                raise InvalidTask(
                    f"expires must be a positive number of seconds or timedelta, "
                    f"not {self.expires!r}."
                )
        deadline = self.expires_at
        if deadline is None:
            return
        if isinstance(deadline, datetime):
            if settings.USE_TZ and not timezone.is_aware(deadline):
                raise InvalidTask("expires_at must be an aware datetime.")
            return
        delay = as_delay(deadline)
        if delay is None or delay <= timedelta(0):
            raise InvalidTask(
                "expires_at must be a datetime, or a positive timedelta or number "
                f"of seconds from the enqueue, not {deadline!r}."
            )

    def using(
        self,
        *,
        priority: int | None = None,
        queue_name: str | None = None,
        run_after: datetime | timedelta | float | None = None,
        backend: str | None = None,
        unique_key: str | None = None,
        expires_at: datetime | timedelta | float | None = None,
        limit_key: str | None = None,
    ) -> "QTask[P, R]":
        """Django's ``using()``, plus this call's ``unique_key``, ``expires_at``
        and ``limit_key`` (the key its task's limits count it under).

        ``run_after`` may be a datetime, a timedelta or a number of seconds
        from the enqueue; ``expires_at`` too (the task must start by then):

            send_receipt.using(run_after=30, unique_key=f"receipt:{order.pk}").enqueue(order.pk)
        """
        changes: dict[str, Any] = {
            "priority": priority,
            "queue_name": queue_name,
            "run_after": run_after,
            "backend": backend,
            "unique_key": unique_key,
            "expires_at": expires_at,
            "call_limit_key": limit_key,
        }
        return replace(self, **{name: v for name, v in changes.items() if v is not None})

    def after[**Rest](
        self: "QTask[Concatenate[Any, Rest], R]",
        *results: "DjangoTaskResult | GroupResult | str",
        on: str = "success",
    ) -> "QTask[Rest, R]":
        """A copy of this task that runs only after the tasks of ``results``.

        ``results`` are task results (or their ids) of the same backend, or
        groups (``enqueue_group``): a group counts as one task that has ended
        once all its members have, successfully if they all succeeded, with
        the list of their return values, in call order, as its value.
        ``on="success"``: it runs once every one of them succeeded, with
        their return value as its first argument (a list of them, in order,
        if there are several); if one does not succeed, it is cancelled.
        ``on="failure"``: it runs as soon as one of them does not succeed,
        with that task's id as its first argument; if they all succeed, it
        is cancelled as not needed:

            page = fetch.enqueue(url)
            parse.after(page).enqueue(url)  # parse(<fetch's value>, url)
            report.after(page, on="failure").enqueue(url)  # report(<page.id>, url)
        """
        if on not in RUN_ON:
            raise InvalidTask(f"after(on={on!r}): give on='success' or on='failure'.")
        if not results:
            raise InvalidTask("after() needs at least one task result to wait for.")
        from .groups import GroupResult  # it imports this module

        ids: list[str] = []
        for result in results:
            if isinstance(result, DjangoTaskResult | GroupResult):
                if result.backend != self.backend:
                    raise InvalidTask(
                        f"after(): result {result.id} belongs to backend "
                        f"{result.backend!r}, this task to {self.backend!r}."
                    )
                result = result.id
            try:
                ids.append(str(uuid.UUID(str(result))))
            except ValueError:
                raise InvalidTask(
                    f"after(): {result!r} is not a task result, a group, or an id."
                ) from None
        if len(set(ids)) < len(ids):
            raise InvalidTask("after(): the same task is given more than once.")
        waiting = replace(self, waits_for=tuple(ids), run_on=RUN_ON[on])
        return cast("QTask[Rest, R]", waiting)  # the worker gives the first argument

    def enqueue_many(self, calls: Iterable[Any]) -> list[QTaskResult]:
        """Queue many calls at once, in one statement; returns their results.

        Each call is a tuple of positional arguments, a dict of keyword
        arguments, or a ``Call(args, kwargs)`` for both. Every call's arguments
        are checked before anything is queued:

            send_receipt.enqueue_many([(order.pk,) for order in orders])
        """
        return queue_backend(self.backend).enqueue_many(self, calls)

    def enqueue_group(self, calls: Iterable[Any]) -> "GroupResult":
        """Queue many calls as one group, in a few statements; returns the
        group's result (progress, ``wait()``, ``cancel()``, return values in
        call order). Calls are given as to ``enqueue_many``; a task can wait
        for the whole group with ``after(group)``:

            group = resize.enqueue_group([(image.pk,) for image in images])
            summarize.after(group).enqueue()  # summarize([<values in order>])
        """
        return queue_backend(self.backend).enqueue_group(self, calls)

    if TYPE_CHECKING:
        # For type checkers only: Django's calls, with the function's parameters
        # (``P``: without the context of a ``takes_context`` task) and this
        # package's result.
        def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> QTaskResult: ...
        async def aenqueue(self, *args: P.args, **kwargs: P.kwargs) -> QTaskResult: ...
        def call(self, *args: P.args, **kwargs: P.kwargs) -> R: ...
        async def acall(self, *args: P.args, **kwargs: P.kwargs) -> R: ...

    def retry_delay(self, attempt: int) -> timedelta:
        """How long to wait after failed attempt number ``attempt`` (from 1)."""
        delay = min(self.retry_backoff * 2 ** (attempt - 1), self.retry_backoff_max)
        if self.retry_jitter:
            delay *= random.uniform(0.5, 1.0)
        return timedelta(seconds=delay)


@overload
def task[**P, R](
    function: Callable[P, R],
    *,
    priority: int = ...,
    queue_name: str = ...,
    backend: str = ...,
    takes_context: Literal[False] = False,
    **options: Any,
) -> QTask[P, R]: ...
@overload
def task[**P, R](
    function: Callable[Concatenate[QTaskContext, P], R],
    *,
    priority: int = ...,
    queue_name: str = ...,
    backend: str = ...,
    takes_context: Literal[True],
    **options: Any,
) -> QTask[P, R]: ...
@overload
def task[**P, R](
    function: None = None,
    *,
    priority: int = ...,
    queue_name: str = ...,
    backend: str = ...,
    takes_context: Literal[False] = False,
    **options: Any,
) -> Callable[[Callable[P, R]], QTask[P, R]]: ...
@overload
def task[**P, R](
    function: None = None,
    *,
    priority: int = ...,
    queue_name: str = ...,
    backend: str = ...,
    takes_context: Literal[True],
    **options: Any,
) -> Callable[[Callable[Concatenate[QTaskContext, P], R]], QTask[P, R]]: ...
def task(
    function: Callable[..., Any] | None = None,
    *,
    priority: int = DEFAULT_TASK_PRIORITY,
    queue_name: str = DEFAULT_TASK_QUEUE_NAME,
    backend: str = DEFAULT_TASK_BACKEND_ALIAS,
    takes_context: bool = False,
    **options: Any,
) -> QTask[..., Any] | Callable[[Callable[..., Any]], QTask[..., Any]]:
    """Declare a task: Django's ``@task`` with this package's options.

    It takes Django's arguments (``priority``, ``queue_name``, ``backend``,
    ``takes_context``) and ``QTask``'s options as keywords: ``max_retries``,
    ``retry_backoff``, ``retry_backoff_max``, ``retry_jitter``, ``timeout``,
    ``store_result``, ``unique``, ``expires``, ``concurrency``,
    ``rate_limit`` and ``limit_key``. Use it bare (``@task``) or
    with arguments (``@task(max_retries=3)``); the task keeps the function's
    signature for type checkers.
    """

    def wrapper(func: Callable[..., Any]) -> QTask[..., Any]:
        return QTask(
            func=func,
            priority=priority,
            queue_name=queue_name,
            backend=backend,
            takes_context=takes_context,
            **options,
        )

    return wrapper(function) if function else wrapper


def as_qtask(task: DjangoTask) -> QTask:
    """``task`` with this package's options. A plain ``django.tasks.Task``
    reaches a queue backend when moved to it with ``using(backend=...)``; it
    gets QTask's defaults (no retries, no timeout, no unique key)."""
    if isinstance(task, QTask):
        return task
    return QTask(**{field.name: getattr(task, field.name) for field in fields(task) if field.init})
