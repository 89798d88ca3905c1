from .compat import InvalidTask, TaskException


class InvalidTaskArguments(InvalidTask, TypeError):
    """An argument given to ``enqueue()`` does not survive a JSON round trip."""


class TaskNotRegistered(TaskException):
    """A queued row names something that is not a registered task."""


class Retry(Exception):
    """Raise inside a task to have it run again, after ``delay`` seconds if given.

    An explicit retry counts as an attempt: once ``max_retries`` retries are
    used up, the task fails with this error.
    """

    def __init__(self, delay: float | None = None, reason: str = "") -> None:
        self.delay = delay
        super().__init__(reason or "Retry requested")


class WorkerLost(TaskException):
    """The attempt crashed: the worker running it stopped renewing its lease
    (killed, or cut off from the store), or the process-pool child running it
    died. Re-run up to the backend's ``crash_retries`` times without using the
    task's own retries; after that, counted as a failed attempt."""


class OutcomeNotStored(TaskException):
    """The store refused what an attempt ended with (a value the database
    cannot hold, say): the task fails with this error, which says why."""


class TaskAborted(TaskException):
    """Someone asked the running task to stop (``result.abort()``, the admin's
    Abort, ``taskq abort``). ``context.raise_if_aborted()`` raises it; an
    attempt that ends in any error once an abort was requested is recorded as
    CANCELLED, and not retried."""


class WorkerStartupError(Exception):
    """A worker start-up hook failed, so the worker cannot run tasks."""


class TaskExpired(TaskException):
    """The task was not started by its deadline (``expires_at``), so it was not
    run: recorded in its result's errors, with status EXPIRED."""


# The errors a task gets when the store or the worker, not the task, ends an
# attempt, as its errors name them (``exception_class_path``): the stores'
# statements write them, and the worker counts a task's crashes by them.
WORKER_LOST = f"{WorkerLost.__module__}.{WorkerLost.__qualname__}"
TASK_EXPIRED = f"{TaskExpired.__module__}.{TaskExpired.__qualname__}"


class InvalidSchedule(InvalidTask):
    """A periodic task's declaration is wrong: raised where it is declared."""


class DependencyFailed(TaskException):
    """A task this one waited for (``QTask.after``) did not succeed, so this
    one was cancelled without running."""


class FallbackNotNeeded(TaskException):
    """Every task this fallback (``after(..., on="failure")``) waited for
    succeeded, so it was cancelled without running."""


class QueueUnavailable(TaskException):
    """The queue's store cannot be used now (its server is unreachable, say):
    nothing was queued. ``enqueue()`` raises it, from the store's own error."""


class QueueNotMigrated(QueueUnavailable):
    """The queue's tables are missing: run ``manage.py migrate``."""


class TaskModuleNotLoaded(RuntimeWarning):
    """A task was enqueued from a module no worker loads (neither an installed
    app's ``tasks`` module nor in the backend's ``task_modules``): workers
    will fail it with ``TaskNotRegistered``."""
