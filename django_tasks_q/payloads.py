"""What crosses into the queue and back: JSON arguments, return values, errors.

Payloads are JSON, never pickle: a row in the queue must not be able to run
code. Every value is checked at ``enqueue()`` (arguments) or when a task ends
(its return value), where the caller can still be told which value is wrong.
"""

import hashlib
import inspect
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .compat import Task, normalize_json
from .exceptions import InvalidTaskArguments
from .storable import storable, unstorable_in
from .task import Call, QTask

Arguments = tuple[list[Any], dict[str, Any]]


def json_round_trip(value: Any) -> Any:
    """``value`` as it comes back from JSON, or TypeError saying why it can't.

    One rule on every store: JSON that PostgreSQL's ``jsonb`` can hold, so no
    string may contain NUL (``\\u0000``) or a lone surrogate. Bytes are not
    JSON: they are refused, not decoded.
    """
    try:
        try:  # Plain JSON already (the usual case): C-speed, no normalising to do.
            encoded = json.dumps(value, allow_nan=False)
            decoded = json.loads(encoded)
            plain = decoded == value
        except (TypeError, ValueError):
            plain = False
        if not plain:
            _refuse_bytes(value)
            try:
                normalised = normalize_json(value)
                encoded = json.dumps(normalised, allow_nan=False)
            except (TypeError, ValueError) as error:
                raise TypeError(str(error)) from None
            decoded = json.loads(encoded)
            if decoded != normalised:
                raise TypeError("it changes in a JSON round trip (non-string keys?)")
    except RecursionError:
        raise TypeError("it is nested too deeply to encode") from None
    # Escaped in the text, NUL and surrogates are cheap to rule out.
    if "\\u0000" in encoded or "\\ud" in encoded:
        _refuse_unstorable_strings(decoded)
    return decoded


def _strings_and_containers(value: Any) -> Iterable[Any]:
    """Every value inside ``value`` (dict keys too), without recursion."""
    stack = [value]
    while stack:
        item = stack.pop()
        yield item
        if isinstance(item, Mapping):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, Sequence) and not isinstance(item, (str, bytes, bytearray)):
            stack.extend(item)


def _refuse_bytes(value: Any) -> None:
    for item in _strings_and_containers(value):
        if isinstance(item, (bytes, bytearray)):
            raise TypeError(
                f"it contains bytes ({_short(item)}): decode them to a string, "
                "or encode them (base64, say)"
            )


def _refuse_unstorable_strings(value: Any) -> None:
    for item in _strings_and_containers(value):
        if isinstance(item, str) and (problem := unstorable_in(item)):
            raise TypeError(
                f"the string {_short(item)} contains {problem}, which JSON payloads "
                "may not hold on any store (PostgreSQL's jsonb cannot)"
            )


def _short(value: str | bytes | bytearray, limit: int = 60) -> str:
    """``value``'s repr (every odd character escaped), cut to about ``limit``."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}...'"


def _positional_names(task: Task, count: int) -> list[str]:
    """How to name each of ``count`` positional arguments in an error."""
    names: list[str] = []
    parameters = list(inspect.signature(task.func).parameters.values())
    if task.takes_context:
        parameters = parameters[1:]
    for parameter in parameters:
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            names.append(repr(parameter.name))
        elif parameter.kind == parameter.VAR_POSITIONAL:
            names += [f"*{parameter.name}[{i}]" for i in range(count - len(names))]
    return names + [f"#{i}" for i in range(len(names), count)]


def _name_the_culprit(task: Task, args: Sequence[Any], kwargs: dict[str, Any]) -> None:
    """Raise InvalidTaskArguments naming the first argument that is not JSON."""
    names = _positional_names(task, len(args))
    labelled = [(f"argument {names[i]} (position {i})", value) for i, value in enumerate(args)]
    labelled += [(f"argument {name!r}", value) for name, value in kwargs.items()]
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


def encode_calls(task: Task, calls: Iterable[Any]) -> list[Arguments]:
    """Each call as JSON (args, kwargs); every call is checked before any is queued.

    A call is a tuple or list of positional arguments, or a dict of keyword
    arguments, or an ``(args, kwargs)`` pair given as ``Call(args, kwargs)``.
    """
    pairs: list[list[Any]] = []
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
            json_round_trip([args, kwargs])
        except TypeError:
            try:
                _name_the_culprit(task, args, kwargs)
            except InvalidTaskArguments as error:
                if len(pairs) > 1:
                    error.args = (f"Call #{index}: {error}",)
                raise
    raise InvalidTaskArguments(f"Cannot enqueue {task.module_path}: arguments are not JSON.")


def derived_unique_key(task: Task, args: list[Any], kwargs: dict[str, Any]) -> str:
    """``unique=True``'s key: the task's path and a hash of its JSON arguments,
    the same for equal arguments whatever their dicts' order."""
    canonical = json.dumps([args, kwargs], sort_keys=True, separators=(",", ":")).encode()
    return f"{task.module_path}:{hashlib.sha256(canonical).hexdigest()}"


def return_value(task: QTask, value: Any) -> Any:
    """What is stored of a task's return value: JSON, or nothing when the
    task does not keep it (then it is not checked either)."""
    if not task.store_result:
        return None
    try:
        return json_round_trip(value)
    except TypeError as problem:
        raise TypeError(
            f"The return value of {task.module_path} is not JSON-serialisable: {problem}."
        ) from None


def error_line(error: BaseException) -> str:
    """The error as a traceback's last line says it: its type, then its
    message, on one line (psycopg's messages span three)."""
    cls = type(error)
    name = (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )
    message = " ".join(str(error).split())
    return storable(f"{name}: {message}" if message else name)


def error_from(exception: BaseException, traceback: str) -> dict[str, str]:
    """How an attempt's error is stored: its class's path and its traceback."""
    cls = type(exception)
    return {
        "exception_class_path": f"{cls.__module__}.{cls.__qualname__}",
        "traceback": storable(traceback),
    }
