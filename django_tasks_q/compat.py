"""Django's Tasks API, from ``django.tasks`` (Django 6.0 and later) or, on
Django 5.2, from the ``django-tasks`` backport (``django_tasks``, the
``django52`` extra). Every other module imports the API from here.

The backport's API is Django's, but for two exception names
(``InvalidTaskError``, ``InvalidTaskBackendError``) and ``normalize_json``
(in ``django_tasks.utils``, not ``django.utils.json``); the names below are
Django 6's. Django 6 imports its checks and signals with ``django.tasks``; so
does this module with the backport, so ``"django_tasks"`` need not be in
INSTALLED_APPS (the checks and the ``setting_changed`` receiver that reloads
``TASKS`` come with the import).
"""

from typing import TYPE_CHECKING

import django
from django.core.exceptions import ImproperlyConfigured

EXTRA = "django52"

# The type checker reads Django 6 (django-stubs): the backport has the same API.
if TYPE_CHECKING or django.VERSION >= (6, 0):
    from django.tasks import (
        DEFAULT_TASK_BACKEND_ALIAS,
        DEFAULT_TASK_QUEUE_NAME,
        Task,
        TaskContext,
        TaskResult,
        TaskResultStatus,
        task,
        task_backends,
    )
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import DEFAULT_TASK_PRIORITY, TaskError
    from django.tasks.exceptions import (
        InvalidTask,
        InvalidTaskBackend,
        TaskException,
        TaskResultDoesNotExist,
    )
    from django.tasks.signals import task_enqueued, task_finished, task_started
    from django.utils.json import normalize_json

    TASKS_PACKAGE = "django.tasks"
else:
    try:
        import django_tasks.checks  # noqa: F401  (registers the backends' checks)
    except ImportError:
        version = ".".join(map(str, django.VERSION[:2]))
        raise ImproperlyConfigured(
            f"django-tasks-q on Django {version} needs the django-tasks backport: "
            f'pip install "django-tasks-q[{EXTRA}]" (or upgrade to Django 6.0+).'
        ) from None
    from django_tasks import (
        DEFAULT_TASK_BACKEND_ALIAS,
        DEFAULT_TASK_QUEUE_NAME,
        TaskContext,
        TaskResult,
        TaskResultStatus,
        task,
        task_backends,
    )
    from django_tasks.backends.base import BaseTaskBackend
    from django_tasks.base import DEFAULT_TASK_PRIORITY, Task, TaskError
    from django_tasks.exceptions import InvalidTaskBackendError as InvalidTaskBackend
    from django_tasks.exceptions import InvalidTaskError as InvalidTask
    from django_tasks.exceptions import TaskException, TaskResultDoesNotExist
    from django_tasks.signals import task_enqueued, task_finished, task_started
    from django_tasks.utils import normalize_json

    TASKS_PACKAGE = "django_tasks"

__all__ = [
    "DEFAULT_TASK_BACKEND_ALIAS",
    "DEFAULT_TASK_PRIORITY",
    "DEFAULT_TASK_QUEUE_NAME",
    "EXTRA",
    "TASKS_PACKAGE",
    "BaseTaskBackend",
    "InvalidTask",
    "InvalidTaskBackend",
    "Task",
    "TaskContext",
    "TaskError",
    "TaskException",
    "TaskResult",
    "TaskResultDoesNotExist",
    "TaskResultStatus",
    "normalize_json",
    "task",
    "task_backends",
    "task_enqueued",
    "task_finished",
    "task_started",
]
