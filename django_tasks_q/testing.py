"""Run queued tasks in a project's own tests: in the test's process, through
the real backend and the worker's own execution path (``worker/execution.py``).

Django's ``ImmediateBackend`` runs tasks without a queue, so it has none of
this package's extensions (``enqueue_many``, ``using(run_after=30)``, unique
keys, retries); ``run_tasks()`` keeps the backend the project uses.
"""

import os
from collections.abc import Iterable

from .backends.base import QueueBackend
from .backends.contract import ClaimedTask, Outcome
from .compat import DEFAULT_TASK_BACKEND_ALIAS, task_backends
from .exceptions import TaskNotRegistered
from .registry import resolve
from .task import QTaskResult
from .worker.execution import failed_attempt, run_attempt, send_finished


def run_tasks(
    backend: str = DEFAULT_TASK_BACKEND_ALIAS,
    *,
    queues: Iterable[str] | None = None,
    max_tasks: int | None = None,
) -> list[QTaskResult]:
    """Run the due tasks of ``backend`` one at a time, in this process, until
    none is due (tasks they enqueue run too) or ``max_tasks`` tasks have
    run; return the results of the tasks that ran, in the order they first
    ran, as they stand at the end.

    ``queues``: only these queues (default: every queue). A task whose retry
    delay has not passed stays queued; a task's ``timeout`` is not enforced.
    """
    store = task_backends[backend]
    if not isinstance(store, QueueBackend):
        raise TypeError(
            f"run_tasks(): TASKS[{backend!r}] is {type(store).__name__}, "
            "not a django-tasks-q backend."
        )
    worker_id = f"run_tasks-{os.getpid()}"
    queue_names = None if queues is None else list(queues)
    ran: dict[str, None] = {}  # task ids, in the order they first ran
    outcomes: list[Outcome] = []
    while True:
        limit = 0 if max_tasks is not None and len(ran) >= max_tasks else 1
        recorded, claimed = store.record_and_claim(outcomes, queue_names, limit, worker_id)
        for outcome in recorded:
            send_finished(store, outcome)
        if not claimed:
            return [store.get_result(task_id) for task_id in ran]
        ran.update(dict.fromkeys(c.id for c in claimed))
        outcomes = [_attempt(store, c) for c in claimed]


def _attempt(store: QueueBackend, claimed: ClaimedTask) -> Outcome:
    try:
        task = resolve(claimed.task_path)
    except TaskNotRegistered as error:
        return failed_attempt(claimed, None, error, None)
    return run_attempt(store, claimed, task)
