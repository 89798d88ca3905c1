from django.tasks.exceptions import InvalidTask, TaskException


class InvalidTaskArguments(InvalidTask, TypeError):
    """An argument given to ``enqueue()`` does not survive a JSON round trip."""


class TaskNotRegistered(TaskException):
    """A queued row names something that is not a registered task."""


class Retry(Exception):
    """Raise inside a task to have it run again, after ``delay`` seconds if given.

    An explicit retry counts as an attempt: once ``max_retries`` retries are
    used up, the task fails with this error.
    """

    def __init__(self, delay: float | None = None, reason: str = ""):
        self.delay = delay
        super().__init__(reason or "Retry requested")


class WorkerLost(TaskException):
    """The worker running an attempt stopped renewing its lease (killed, or cut
    off from the database), so the attempt is counted as failed."""


class DependencyFailed(TaskException):
    """A task this one waited for (``QTask.after``) did not succeed, so this
    one was cancelled without running."""


class FallbackNotNeeded(TaskException):
    """Every task this fallback (``after(..., on="failure")``) waited for
    succeeded, so it was cancelled without running."""
