"""``@task``: Django's ``Task`` with the options a production queue needs."""

import random
import uuid
from dataclasses import dataclass, field, replace
from datetime import timedelta

from django.tasks import DEFAULT_TASK_BACKEND_ALIAS, DEFAULT_TASK_QUEUE_NAME
from django.tasks import Task as DjangoTask
from django.tasks import TaskResult as DjangoTaskResult
from django.tasks.base import DEFAULT_TASK_PRIORITY
from django.tasks.exceptions import InvalidTask

# after(on=...) -> the run_on stored with the waiting task (models.RunOn).
RUN_ON = {"success": "SUCCESS", "failure": "FAILURE"}


@dataclass(frozen=True, slots=True)
class Call:
    """One call for ``enqueue_many`` with both positional and keyword arguments."""

    args: tuple = ()
    kwargs: dict = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class QTaskResult(DjangoTaskResult):
    """The ``django.tasks.TaskResult`` this package's backends return.

    Everything Django's has, plus what a production queue adds on top.
    """

    def wait(self, timeout: float | None = None) -> "QTaskResult":
        """Block until the task has finished, refresh this result and return it.

        Raises ``TimeoutError`` if it has not finished after ``timeout``
        seconds (None: wait as long as it takes)::

            page = fetch.enqueue(url).wait(timeout=30).return_value
        """
        self.task.get_backend().wait_for_result(self.id, timeout)
        self.refresh()
        return self

    async def async_wait(self, timeout: float | None = None) -> "QTaskResult":
        """``wait()`` for async code: ``await result.async_wait(timeout=30)``."""
        await self.task.get_backend().async_wait_for_result(self.id, timeout)
        await self.arefresh()
        return self


@dataclass(frozen=True, slots=True, kw_only=True)
class QTask(DjangoTask):
    """A ``django.tasks.Task`` with retries, backoff and a timeout.

    This is the ``task_class`` of this package's backends, so
    ``@django.tasks.task`` accepts these options too when it targets them.
    """

    max_retries: int = 0  # retries after the first attempt
    retry_backoff: float = 1.0  # seconds before the first retry; doubles each time
    retry_backoff_max: float = 600.0  # the cap on one delay, in seconds
    retry_jitter: bool = True  # wait a random 50-100% of the delay
    timeout: float | None = None  # seconds one attempt may run
    # Set by after(): the ids of the tasks this one waits for, and whether it
    # runs once they all succeeded ("SUCCESS") or once one did not ("FAILURE").
    waits_for: tuple[str, ...] = ()
    run_on: str = "SUCCESS"

    def __post_init__(self):
        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise InvalidTask("max_retries must be a whole number of at least 0.")
        if self.retry_backoff < 0 or self.retry_backoff_max < 0:
            raise InvalidTask("retry_backoff and retry_backoff_max must be >= 0.")
        if self.timeout is not None and self.timeout <= 0:
            raise InvalidTask("timeout must be a positive number of seconds.")
        if self.run_on not in RUN_ON.values():
            raise InvalidTask("run_on must be 'SUCCESS' or 'FAILURE'; see after().")
        DjangoTask.__post_init__(self)

    def after(self, *results, on: str = "success") -> "QTask":
        """A copy of this task that runs only after the tasks of ``results``.

        ``results`` are task results (or their ids) of the same backend.
        ``on="success"``: it runs once every one of them succeeded, with
        their return value as its first argument (a list of them, in order,
        if there are several); if one does not succeed, it is cancelled.
        ``on="failure"``: it runs as soon as one of them does not succeed,
        with that task's id as its first argument; if they all succeed, it
        is cancelled as not needed::

            page = fetch.enqueue(url)
            parse.after(page).enqueue(url)  # parse(<fetch's value>, url)
            report.after(page, on="failure").enqueue(url)  # report(<page.id>, url)
        """
        if on not in RUN_ON:
            raise InvalidTask(f"after(on={on!r}): give on='success' or on='failure'.")
        if not results:
            raise InvalidTask("after() needs at least one task result to wait for.")
        ids = []
        for result in results:
            if isinstance(result, DjangoTaskResult):
                if result.backend != self.backend:
                    raise InvalidTask(
                        f"after(): result {result.id} belongs to backend "
                        f"{result.backend!r}, this task to {self.backend!r}."
                    )
                result = result.id
            try:
                ids.append(str(uuid.UUID(str(result))))
            except ValueError:
                raise InvalidTask(f"after(): {result!r} is not a task result or id.") from None
        if len(set(ids)) < len(ids):
            raise InvalidTask("after(): the same task is given more than once.")
        return replace(self, waits_for=tuple(ids), run_on=RUN_ON[on])

    def enqueue_many(self, calls):
        """Queue many calls at once, in one statement; returns their results.

        Each call is a tuple of positional arguments, a dict of keyword
        arguments, or a ``Call(args, kwargs)`` for both. Every call's arguments
        are checked before anything is queued::

            send_receipt.enqueue_many([(order.pk,) for order in orders])
        """
        return self.get_backend().enqueue_many(self, calls)

    def retry_delay(self, attempt: int) -> timedelta:
        """How long to wait after failed attempt number ``attempt`` (from 1)."""
        delay = min(self.retry_backoff * 2 ** (attempt - 1), self.retry_backoff_max)
        if self.retry_jitter:
            delay *= random.uniform(0.5, 1.0)
        return timedelta(seconds=delay)


def task(
    function=None,
    *,
    priority=DEFAULT_TASK_PRIORITY,
    queue_name=DEFAULT_TASK_QUEUE_NAME,
    backend=DEFAULT_TASK_BACKEND_ALIAS,
    takes_context=False,
    **options,
):
    """Declare a task. Takes Django's ``@task`` arguments and ``QTask``'s options:

    ``max_retries``, ``retry_backoff``, ``retry_backoff_max``, ``retry_jitter``,
    ``timeout``.
    """

    def wrapper(func):
        return QTask(
            func=func,
            priority=priority,
            queue_name=queue_name,
            backend=backend,
            takes_context=takes_context,
            **options,
        )

    return wrapper(function) if function else wrapper
