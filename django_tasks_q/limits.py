"""Concurrency and rate limits: what a task or queue declares, and the group
each call counts in.

A limited task's rows carry their limits (``Task.limit_key``,
``concurrency_limit``, ``rate_limit``, ``rate_period``) so that the claim can
enforce them without importing anything; a queue's limits come from the
backend's ``queue_limits`` option. The stores enforce them where tasks are
claimed (see docs/guide/limits.md).
"""

import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .checks import BadValue
from .compat import InvalidTask

if TYPE_CHECKING:
    from .task import QTask

LIMIT_KEY_MAX_LENGTH = 255  # Task.limit_key's column
# A queue's rate-limit group in the stores' rate records: task groups are
# dotted paths, which never start with "@".
QUEUE_GROUP_PREFIX = "@queue:"

PERIODS = {"s": 1, "m": 60, "h": 3600}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*([smh])\s*$")


@dataclass(frozen=True, slots=True)
class Rate:
    """At most ``count`` starts in any ``period`` seconds."""

    count: int
    period: int


def parse_rate(value: Any) -> Rate:
    """``"10/s"``, ``"100/m"`` or ``"1000/h"`` as a Rate; ValueError if it is none of those."""
    match = _RATE.match(value) if isinstance(value, str) else None
    if match is None or int(match[1]) < 1:
        raise ValueError(
            f'a rate limit is "N/s", "N/m" or "N/h" with N a whole number of at least 1, '
            f"not {value!r}"
        )
    return Rate(int(match[1]), PERIODS[match[2]])


def check_task_limits(task: "QTask") -> None:
    """InvalidTask unless ``task``'s concurrency, rate_limit and limit_key make sense."""
    concurrency = task.concurrency
    if concurrency is not None and (
        isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1
    ):
        raise InvalidTask(f"concurrency must be a whole number of at least 1, not {concurrency!r}.")
    if task.rate_limit is not None:
        try:
            parse_rate(task.rate_limit)
        except ValueError as error:
            raise InvalidTask(f"rate_limit: {error}.") from None
    limited = concurrency is not None or task.rate_limit is not None
    key = task.limit_key
    if key is not None:
        if not limited:
            raise InvalidTask("limit_key needs a concurrency or a rate_limit to apply per key.")
        if isinstance(key, str):
            if key not in _parameters(task):
                raise InvalidTask(
                    f"limit_key {key!r} names no parameter of {task.module_path} "
                    f"(its parameters: {', '.join(_parameters(task)) or 'none'}); "
                    "give a parameter's name or a function of the call's arguments."
                )
        elif not callable(key):
            raise InvalidTask(f"limit_key must be a parameter's name or a function, not {key!r}.")
    call_key = task.call_limit_key
    if call_key is not None:
        if not limited:
            raise InvalidTask(
                f"using(limit_key=...): {task.module_path} has no concurrency or rate_limit."
            )
        if not isinstance(call_key, str) or not call_key:
            raise InvalidTask(f"using(limit_key=...) takes a non-empty string, not {call_key!r}.")


def _parameters(task: "QTask") -> list[str]:
    parameters = list(inspect.signature(task.func).parameters)
    return parameters[1:] if task.takes_context else parameters


def _key_of_call(
    task: "QTask", key: str | Callable[..., Any], args: list[Any], kwargs: dict[str, Any]
) -> str:
    """The value of ``key`` (a parameter's name, or a function) for one call."""
    if callable(key):
        try:
            value = key(*args, **kwargs)
        except Exception as error:
            raise InvalidTask(
                f"The limit_key function of {task.module_path} raised "
                f"{type(error).__name__}: {error}"
            ) from error
        if not isinstance(value, str):
            raise InvalidTask(
                f"The limit_key function of {task.module_path} must return a string, not {value!r}."
            )
        return value
    signature = inspect.signature(task.func)
    if task.takes_context:
        signature = signature.replace(parameters=list(signature.parameters.values())[1:])
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as error:
        raise InvalidTask(f"{task.module_path}: {error}, so it has no limit_key.") from None
    bound.apply_defaults()
    return str(bound.arguments[key])


def limit_keys(task: "QTask", calls: list[tuple[list[Any], dict[str, Any]]]) -> list[str] | None:
    """The group each call counts in for its task's limits (None: the task
    has none): the task's path, and ``:<key>`` when it is limited per key."""
    if task.concurrency is None and task.rate_limit is None:
        return None
    path = task.module_path
    if task.call_limit_key is not None:
        keys = [f"{path}:{task.call_limit_key}"] * len(calls)
    elif task.limit_key is None:
        keys = [path] * len(calls)
    else:
        keys = [f"{path}:{_key_of_call(task, task.limit_key, *call)}" for call in calls]
    for key in keys:
        if len(key) > LIMIT_KEY_MAX_LENGTH:
            raise InvalidTask(
                f"The limit key {key[:60]!r}... is longer than {LIMIT_KEY_MAX_LENGTH} "
                "characters (the task's path, ':' and the key)."
            )
    return keys


@dataclass(frozen=True, slots=True)
class QueueLimit:
    """One queue's limits, from the backend's ``queue_limits`` option."""

    concurrency: int | None = None
    rate: Rate | None = None

    def as_json(self, name: str) -> dict[str, Any]:
        """As the claim statements read it."""
        return {
            "name": name,
            "concurrency": self.concurrency,
            "rate": None if self.rate is None else self.rate.count,
            "period": None if self.rate is None else self.rate.period,
        }


QUEUE_LIMITS_SHAPE = (
    'a dict of queue names to {"concurrency": N, "rate_limit": "N/s"} '
    "(either or both, N at least 1)"
)


def queue_limits(value: Any) -> dict[str, QueueLimit]:
    """The ``queue_limits`` option: ``{"emails": {"concurrency": 5, "rate_limit": "20/s"}}``."""
    if not isinstance(value, Mapping):
        raise BadValue(QUEUE_LIMITS_SHAPE)
    limits = {}
    for name, limit in value.items():
        if not isinstance(name, str) or not name or not isinstance(limit, Mapping):
            raise BadValue(QUEUE_LIMITS_SHAPE)
        if not limit or set(limit) - {"concurrency", "rate_limit"}:
            raise BadValue(QUEUE_LIMITS_SHAPE)
        concurrency = limit.get("concurrency")
        if concurrency is not None and (
            isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1
        ):
            raise BadValue(QUEUE_LIMITS_SHAPE)
        try:
            rate = None if limit.get("rate_limit") is None else parse_rate(limit["rate_limit"])
        except ValueError:
            raise BadValue(QUEUE_LIMITS_SHAPE) from None
        limits[name] = QueueLimit(concurrency, rate)
    return limits


# The paths of the tasks with limits that this process has declared: a worker
# runs the limited claim only if some task it knows, or a queue, has limits.
declared: set[str] = set()
