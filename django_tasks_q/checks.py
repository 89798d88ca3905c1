"""A backend's OPTIONS, each declared once: its name, default, the one type it
takes and what it means, so that every backend reads an option the same way
and ``manage.py check`` reports every mistake in them.

A backend lists its ``Option``s; its constructor reads them with
``read_options`` (a bad value falls back to the default, so the backend can
still be built and ``check()`` can say what is wrong), and ``check()``
returns what ``option_messages`` found: an error for a value of the wrong
type, a warning for a key no option has, with the likeliest one it meant.
"""

import difflib
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core import checks


class BadValue(ValueError):
    """An option's value is not what the option takes; the message says what it takes."""


@dataclass(frozen=True)
class Option:
    name: str
    default: Any
    # The value as the backend uses it; BadValue if it is not what it takes.
    parse: Callable[[Any], Any]
    check_id: str = "django_tasks_q.E009"  # the error reported for a bad value


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadValue
    return float(value)


def positive_seconds(value: Any) -> float:
    """A positive number of seconds (int or float)."""
    try:
        seconds = _number(value)
    except BadValue:
        raise BadValue("a positive number of seconds") from None
    if seconds <= 0:
        raise BadValue("a positive number of seconds")
    return seconds


def duration(value: Any) -> timedelta:
    """A positive number of seconds, or a timedelta."""
    if isinstance(value, timedelta):
        if value <= timedelta(0):
            raise BadValue("a positive number of seconds or a timedelta")
        return value
    try:
        return timedelta(seconds=positive_seconds(value))
    except BadValue:
        raise BadValue("a positive number of seconds or a timedelta") from None


def duration_or_none(value: Any) -> timedelta | None:
    """A positive number of seconds, a timedelta, or None (for ever)."""
    if value is None:
        return None
    try:
        return duration(value)
    except BadValue:
        raise BadValue("a positive number of seconds, a timedelta, or None") from None


def count(value: Any) -> int:
    """A whole number, 0 or more."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadValue("a whole number, 0 or more")
    return value


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise BadValue("True or False")
    return value


def text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise BadValue("a non-empty string")
    return value


def module_names(value: Any) -> tuple[str, ...]:
    """A list (or tuple) of dotted module names."""
    if not isinstance(value, list | tuple) or not all(
        isinstance(name, str) and name and all(part.isidentifier() for part in name.split("."))
        for name in value
    ):
        raise BadValue("a list of dotted module names")
    return tuple(value)


def database_alias(value: Any) -> str:
    """The alias of a database in DATABASES."""
    if not isinstance(value, str) or value not in settings.DATABASES:
        raise BadValue(f"the alias of a database in DATABASES ({', '.join(settings.DATABASES)})")
    return value


def direct_postgres_alias(value: Any) -> str | None:
    """None, or the alias of a PostgreSQL database in DATABASES (for LISTEN:
    one that connects directly, not through a pooler in transaction mode)."""
    from django.db import connections

    if value is None:
        return None
    if (
        not isinstance(value, str)
        or value not in settings.DATABASES
        or connections[value].vendor != "postgresql"
    ):
        postgres = [
            alias for alias in settings.DATABASES if connections[alias].vendor == "postgresql"
        ]
        raise BadValue(
            f"None or the alias of a PostgreSQL database in DATABASES ({', '.join(postgres)})"
        )
    return value


def read_options(
    alias: str, given: Mapping[str, Any], declared: Iterable[Option]
) -> tuple[dict[str, Any], list[checks.CheckMessage]]:
    """Each declared option's value (its default where the value is bad), and
    the check messages for what is wrong in ``given``."""
    declared = list(declared)
    values: dict[str, Any] = {}
    messages: list[checks.CheckMessage] = []
    where = f"TASKS[{alias!r}]['OPTIONS']"
    if not isinstance(given, Mapping):
        messages.append(checks.Error(f"{where} must be a dict.", id="django_tasks_q.E009"))
        given = {}
    for option in declared:
        try:
            values[option.name] = option.parse(given.get(option.name, option.default))
        except BadValue as expected:
            values[option.name] = option.parse(option.default)
            messages.append(
                checks.Error(
                    f"{where}[{option.name!r}] must be {expected}, not {given[option.name]!r}.",
                    id=option.check_id,
                )
            )
    names = [option.name for option in declared]
    for unknown in sorted(set(given) - set(names), key=str):
        close = difflib.get_close_matches(str(unknown), names, n=1)
        messages.append(
            checks.Warning(
                f"{where} has an unknown option {unknown!r}; it is ignored.",
                hint=f"Did you mean {close[0]!r}?"
                if close
                else f"The options are: {', '.join(names)}.",
                id="django_tasks_q.W001",
            )
        )
    return values, messages
