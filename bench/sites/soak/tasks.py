"""The soak's task, and how each worker process notes what it did.

Each worker process appends to its own file in SOAK_DATA/records/: ``E <n>``
when task n starts an execution (the task's first act), ``R <n>`` when the
worker has recorded task n's result (``task_finished``, which the worker
sends only for an outcome its store accepted). ``os.write`` on an
``O_APPEND`` file: a line written survives a SIGKILL of the process.
"""

import os
import random
import time

from django.dispatch import receiver
from django.tasks.signals import task_finished

from django_tasks_q import task

RECORDS = "records"
_files: dict[int, int] = {}  # pid -> descriptor; a forked child opens its own


def note(kind: str, index: int) -> None:
    pid = os.getpid()
    if pid not in _files:
        directory = os.path.join(os.environ["SOAK_DATA"], RECORDS)
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, f"{pid}.txt")
        _files[pid] = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(_files[pid], f"{kind} {index}\n".encode())


@task
def work(index: int) -> int:
    note("E", index)
    time.sleep(random.uniform(0, 0.01))  # long enough that a kill finds tasks running
    return index


@receiver(task_finished)
def noted_as_recorded(sender, task_result, **kwargs) -> None:
    if task_result.task.module_path == work.module_path:
        note("R", task_result.args[0])
