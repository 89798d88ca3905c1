"""``@task``: Django's ``Task`` with the options a production queue needs."""

import random
from dataclasses import dataclass, field
from datetime import timedelta

from django.tasks import DEFAULT_TASK_BACKEND_ALIAS, DEFAULT_TASK_QUEUE_NAME
from django.tasks import Task as DjangoTask
from django.tasks import TaskResult as DjangoTaskResult
from django.tasks.base import DEFAULT_TASK_PRIORITY
from django.tasks.exceptions import InvalidTask


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

    def __post_init__(self):
        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise InvalidTask("max_retries must be a whole number of at least 0.")
        if self.retry_backoff < 0 or self.retry_backoff_max < 0:
            raise InvalidTask("retry_backoff and retry_backoff_max must be >= 0.")
        if self.timeout is not None and self.timeout <= 0:
            raise InvalidTask("timeout must be a positive number of seconds.")
        DjangoTask.__post_init__(self)

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
