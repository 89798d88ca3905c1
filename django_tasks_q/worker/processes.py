"""The process pool: each slot a child process, for CPU-bound work and hard
timeouts.

A supervisor thread per slot hands its child one task at a time over a pipe
and waits for the outcome. A child that overruns the task's timeout is killed
and replaced; one that dies (a crash, the OOM killer) fails that attempt and
is replaced; one that has run ``max_tasks_per_child`` tasks is retired, which
bounds the memory a leaky task can take.

Children are started with "spawn": a clean interpreter that sets Django up
itself, inheriting no threads or database connections from the worker. They
ignore SIGINT/SIGTERM: the worker decides when they stop.
"""

import multiprocessing
import queue
import threading

from . import child
from .execution import Job, failed_attempt, timed_out_attempt


class ChildProcessDied(Exception):
    """The child process running the attempt exited before reporting on it."""


class _Slot:
    def __init__(self, pool: "ProcessPool", number: int):
        self._pool = pool
        self._name = f"taskq-process-{number}"
        self._process = None
        self._connection = None
        self._tasks_run = 0
        threading.Thread(target=self._supervise, name=self._name, daemon=True).start()

    def _spawn(self):
        parent_end, child_end = self._pool.context.Pipe()
        self._process = self._pool.context.Process(
            target=child.main,
            args=(child_end, self._pool.backend.alias),
            name=self._name,
            daemon=True,
        )
        self._process.start()
        child_end.close()
        self._connection = parent_end
        self._tasks_run = 0

    def _retire(self, kill: bool = False):
        if self._process is None:
            return
        if kill:
            self._process.kill()
        else:
            try:
                self._connection.send(None)
            except OSError:
                pass
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._connection.close()
        self._process = self._connection = None

    def _supervise(self):
        while (job := self._pool.inbox.get()) is not None:
            if not job.begin():
                continue  # handed back while it waited
            if self._process is None:
                self._spawn()
            self._pool.on_done(self._run(job))
            limit = self._pool.max_tasks_per_child
            if limit and self._tasks_run >= limit:
                self._retire()
        self._retire()

    def _run(self, job: Job):
        self._tasks_run += 1
        try:
            self._connection.send(job.claimed)
            if self._connection.poll(job.timeout):
                return self._connection.recv()
        except (EOFError, OSError):
            self._process.join(timeout=5)  # reap it, to read its exit code
            code = self._process.exitcode
            self._retire(kill=True)
            error = ChildProcessDied(f"The process running the task exited (exit code {code}).")
            return failed_attempt(job.claimed, job.task, error, job.started)
        self._retire(kill=True)
        return timed_out_attempt(job, "its process was killed")


class ProcessPool:
    def __init__(self, backend, size: int, on_done, max_tasks_per_child: int | None = None):
        self.backend = backend
        self.on_done = on_done
        self.max_tasks_per_child = max_tasks_per_child
        self.context = multiprocessing.get_context("spawn")
        self.inbox: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._slots = [_Slot(self, number) for number in range(1, size + 1)]

    def submit(self, job: Job) -> None:
        self.inbox.put(job)

    def next_deadline(self) -> None:
        return None  # each slot watches its own child's deadline

    def expire(self) -> None:
        pass

    def shutdown(self) -> None:
        """Retire idle children; kill busy ones (their tasks were handed back)."""
        for _ in self._slots:
            self.inbox.put(None)
        for slot in self._slots:
            process = slot._process
            if process is not None and process.is_alive():
                process.join(timeout=0.5)
                if process.is_alive():
                    process.kill()
