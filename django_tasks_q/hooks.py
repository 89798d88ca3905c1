"""Worker start-up hooks: load a model or open a client once per worker process.

A hook is a function in an app's ``tasks`` module (the worker imports those
at start-up), decorated with ``@on_worker_start``. Each worker process runs
every hook once before it runs a task: the worker itself for the thread pool
and the asyncio loop, each child for the process pool. What a hook returns
reaches tasks as ``context.resources[<hook name>]``.
"""

from collections.abc import Callable, Mapping
from inspect import iscoroutinefunction
from types import MappingProxyType
from typing import Any, overload

from django.core.exceptions import ImproperlyConfigured

from .exceptions import WorkerStartupError

_hooks: dict[str, Callable[[], Any]] = {}
_resources: Mapping[str, Any] = MappingProxyType({})


def _path(function: Callable[..., Any]) -> str:
    return f"{function.__module__}.{function.__qualname__}"


@overload
def on_worker_start[Hook: Callable[[], Any]](
    function: Hook, *, name: str | None = None
) -> Hook: ...
@overload
def on_worker_start[Hook: Callable[[], Any]](
    function: None = None, *, name: str | None = None
) -> Callable[[Hook], Hook]: ...
def on_worker_start[Hook: Callable[[], Any]](
    function: Hook | None = None, *, name: str | None = None
) -> Hook | Callable[[Hook], Hook]:
    """Run ``function()`` once in each worker process before it runs tasks.

    Tasks read its return value as ``context.resources[name]`` (``name``
    defaults to the function's name):

        @on_worker_start
        def model():
            return load_model("/models/classifier.bin")

        @task(takes_context=True)
        def classify(context, text):
            return context.resources["model"].predict(text)

    If a hook raises, the worker exits with an error instead of running tasks.
    """

    def register(func: Hook) -> Hook:
        if iscoroutinefunction(func):
            raise TypeError(f"{_path(func)}: a worker start-up hook must be a plain function.")
        key = name or func.__name__
        existing = _hooks.get(key)
        # The same function registered again (a module imported twice) replaces itself.
        if existing is not None and _path(existing) != _path(func):
            raise ImproperlyConfigured(
                f"Two worker start-up hooks are named {key!r}: {_path(existing)} and "
                f"{_path(func)}. Give one another name: @on_worker_start(name=...)."
            )
        _hooks[key] = func
        return func

    return register(function) if function else register


def run_worker_start_hooks() -> None:
    """Run every hook in the order they were declared, and keep what they return
    for tasks' contexts. Raises ``WorkerStartupError`` naming the hook that failed."""
    global _resources
    resources: dict[str, Any] = {}
    for key, func in _hooks.items():
        try:
            resources[key] = func()
        except Exception as error:
            raise WorkerStartupError(
                f"Worker start-up hook {key!r} ({_path(func)}) failed: "
                f"{type(error).__name__}: {error}"
            ) from error
    _resources = MappingProxyType(resources)


def worker_resources() -> Mapping[str, Any]:
    """What this process's start-up hooks returned, by hook name."""
    return _resources
