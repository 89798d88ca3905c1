"""The entry point of a process-pool child.

Kept apart from ``processes.py`` because a spawned child imports this module
before Django is set up: nothing here may import models at the top.
"""

import signal
import traceback
from multiprocessing.connection import Connection
from typing import cast


def main(connection: Connection, backend_alias: str) -> None:
    # Ctrl-C and a service manager's SIGTERM reach the whole process group:
    # the worker decides when its children stop, not the signal.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    import django

    django.setup()
    from ..backends.contract import WorkerStore
    from ..compat import task_backends
    from ..exceptions import TaskNotRegistered, WorkerStartupError
    from ..hooks import run_worker_start_hooks
    from ..registry import autodiscover, resolve
    from .execution import failed_attempt, run_attempt

    # The worker serves only stores (runtaskworker checked): this one is too.
    backend = cast(WorkerStore, task_backends[backend_alias])
    autodiscover(backend.task_modules)
    # The first message says whether this child can run tasks at all.
    try:
        run_worker_start_hooks()
    except WorkerStartupError as error:
        connection.send((str(error), "".join(traceback.format_exception(error))))
        return
    connection.send(None)
    while True:
        try:
            claimed = connection.recv()
        except EOFError:  # the worker is gone
            return
        if claimed is None:
            return
        # Resolved here, from the registry: the pipe carries data, not code.
        try:
            task = resolve(claimed.task_path)
        except TaskNotRegistered as error:
            connection.send(failed_attempt(claimed, None, error, None))
            continue
        outcome = run_attempt(backend, claimed, task)
        outcome.result = None  # the worker makes its own for task_finished: data only
        connection.send(outcome)
