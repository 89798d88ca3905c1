"""The backend a management command works on, named by its TASKS alias."""

from django.core.management.base import CommandError

from ..backends.base import QueueBackend
from ..compat import InvalidTaskBackend, task_backends


def queue_backend(alias: str) -> QueueBackend:
    """TASKS[alias], if it is a django-tasks-q backend; CommandError if not."""
    try:
        backend = task_backends[alias]
    except InvalidTaskBackend as error:
        raise CommandError(error) from None
    if not isinstance(backend, QueueBackend):
        raise CommandError(
            f"TASKS[{alias!r}] is {type(backend).__name__}, not a django-tasks-q "
            "backend: it has no queue to work on."
        )
    return backend
