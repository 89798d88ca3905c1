"""Which task a queued row names, without importing anything the row says.

A row's ``task_path`` is data, and data must not choose code to import. A path
resolves only to a ``django.tasks.Task`` that is an attribute of a module the
process has already imported: the ``tasks`` modules of installed apps (loaded
by ``autodiscover()``) and whatever the project imported itself.
"""

import sys
from collections.abc import Iterable
from importlib import import_module

from django.apps import apps
from django.utils.module_loading import autodiscover_modules

from .compat import Task
from .exceptions import TaskNotRegistered, WorkerStartupError
from .task import QTask, as_qtask


def autodiscover(task_modules: Iterable[str] = (), option: str = "task_modules") -> None:
    """Import the ``tasks`` module of every installed app that has one, and
    ``task_modules`` (a backend's ``option``: tasks kept elsewhere)."""
    autodiscover_modules("tasks")
    for name in task_modules:
        try:
            import_module(name)
        except ModuleNotFoundError as error:
            if not (name == error.name or name.startswith(f"{error.name}.")):
                raise  # the module exists; something it imports does not
            raise WorkerStartupError(f"{option} names {name!r}, which does not exist.") from None


def loaded_by_workers(module_name: str, task_modules: Iterable[str]) -> bool:
    """Whether a worker imports ``module_name`` when it starts."""
    if module_name in task_modules:
        return True
    return any(module_name == f"{config.name}.tasks" for config in apps.get_app_configs())


_discovered = False


def resolve(task_path: str) -> QTask:
    global _discovered
    module_name, _, name = task_path.rpartition(".")
    module = sys.modules.get(module_name)
    if module is None and not _discovered:
        # A web process may not have imported every tasks module yet.
        autodiscover()
        _discovered = True
        module = sys.modules.get(module_name)
    if module is None:
        raise TaskNotRegistered(
            f"{task_path!r} is not a registered task: module {module_name!r} is "
            "not loaded. Tasks are found in the 'tasks' module of installed apps "
            "and in the modules of the backend's task_modules option."
        )
    candidate = getattr(module, name, None)
    if not isinstance(candidate, Task) or candidate.module_path != task_path:
        found = "missing" if candidate is None else f"a {type(candidate).__name__!r}"
        raise TaskNotRegistered(
            f"{task_path!r} is not a registered task: it is {found}, "
            "not a function decorated with @task."
        )
    return as_qtask(candidate)
