"""The thread pool: a fixed number of threads that run tasks, and give up on
ones that overrun.

A Python thread cannot be stopped from outside, so a task past its timeout is
abandoned: the pool reports it as timed out at once, starts a fresh thread in
its place so capacity stays the same, and drops whatever the old thread
returns later. The old thread runs on until its task ends (or the process
exits); use the process pool where a task must really be stopped.

For the same reason an abort is cooperative here: the task sees it through
``context.abort_requested`` and stops itself.
"""

import queue
import threading
import time

from ..backends.contract import WorkerStore
from .execution import Job, run_attempt, timed_out_attempt
from .pool import OnDone


class ThreadPool:
    def __init__(self, backend: WorkerStore, size: int, on_done: OnDone) -> None:
        self._backend = backend
        self._on_done = on_done
        self._inbox: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._running: dict[str, Job] = {}
        self._size = size
        self._serial = 0
        for _ in range(size):
            self._start_thread()

    def _start_thread(self) -> None:
        self._serial += 1
        threading.Thread(target=self._work, name=f"taskq-{self._serial}", daemon=True).start()

    def submit(self, job: Job) -> None:
        self._inbox.put(job)

    def _work(self) -> None:
        while (job := self._inbox.get()) is not None:
            if not job.begin():
                continue  # handed back while it waited
            with self._lock:
                self._running[job.claimed.id] = job
            outcome = run_attempt(self._backend, job.claimed, job.task, job.aborting)
            with self._lock:
                abandoned = self._running.pop(job.claimed.id, None) is not job
            if abandoned:
                return  # timed out: a new thread has taken this one's place
            self._on_done(outcome)

    def abort(self, job: Job) -> None:
        """Nothing to do from outside: the task's context sees ``job.aborting``."""

    def next_deadline(self) -> float | None:
        with self._lock:
            deadlines = [d for job in self._running.values() if (d := job.deadline) is not None]
        return min(deadlines, default=None)

    def expire(self) -> None:
        """Report and abandon the tasks running past their timeout."""
        now = time.monotonic()
        with self._lock:
            expired = [
                job
                for job in self._running.values()
                if (deadline := job.deadline) is not None and deadline <= now
            ]
            for job in expired:
                del self._running[job.claimed.id]
                self._start_thread()
        for job in expired:
            self._on_done(timed_out_attempt(job, "its thread was abandoned"))

    def shutdown(self) -> None:
        """Let idle threads exit; busy ones are daemons and end with the process."""
        for _ in range(self._size):
            self._inbox.put(None)
