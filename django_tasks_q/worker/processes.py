"""The process pool: each slot a child process, for CPU-bound work and hard
timeouts.

A supervisor thread per slot hands its child one task at a time over a pipe
and waits for the outcome. A child that overruns the task's timeout is killed
and replaced; one that dies (a segfault, the OOM killer) is a crash, handled
as the stores handle a lost worker (``crashed_attempt``: re-run within
``crash_retries``), and is replaced; one that has run ``max_tasks_per_child``
tasks is retired, which bounds the memory a leaky task can take. An aborted task's child is killed
and replaced, as on a timeout.

A child runs the worker start-up hooks before it takes a task; if one fails,
the pool reports it (``on_fatal``) and the worker stops.

Children are started with "spawn": a clean interpreter that sets Django up
itself, inheriting no threads or database connections from the worker. They
ignore SIGINT/SIGTERM: the worker decides when they stop.
"""

import logging
import multiprocessing
import queue
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnProcess

from ..backends.contract import Outcome, WorkerStore
from ..exceptions import WorkerStartupError
from . import child
from .execution import Job, aborted_attempt, crashed_attempt, timed_out_attempt
from .pool import OnDone

logger = logging.getLogger("django_tasks_q.worker")


@dataclass(slots=True)
class _Child:
    """A slot's child process, and the worker's end of the pipe to it."""

    process: SpawnProcess
    connection: Connection
    tasks_run: int = 0


class _Slot:
    def __init__(self, pool: "ProcessPool", number: int) -> None:
        self._pool = pool
        self._name = f"taskq-process-{number}"
        self._child: _Child | None = None  # started when a job first comes
        # The job the child is running; abort() (another thread) may kill the
        # child only while it runs that job.
        self._lock = threading.Lock()
        self._job: Job | None = None
        threading.Thread(target=self._supervise, name=self._name, daemon=True).start()

    def _spawn(self) -> _Child:
        """Start a child and wait until its start-up hooks have run."""
        parent_end, child_end = self._pool.context.Pipe()
        process = self._pool.context.Process(
            target=child.main,
            args=(child_end, self._pool.backend.alias),
            name=self._name,
            daemon=True,
        )
        process.start()
        child_end.close()
        self._child = started = _Child(process, parent_end)
        try:
            failure = parent_end.recv()
        except (EOFError, OSError):
            process.join(timeout=5)
            failure = (
                f"A process-pool child exited while starting (exit code "
                f"{process.exitcode}); its output says why.",
                "",
            )
        if failure is not None:
            self._retire(kill=True)
            message, details = failure
            if details:
                logger.error("%s", details.rstrip())
            raise WorkerStartupError(message)
        return started

    def _retire(self, kill: bool = False) -> None:
        if (running := self._child) is None:
            return
        process = running.process
        if kill:
            process.kill()
        else:
            try:
                running.connection.send(None)
            except OSError:
                pass
        process.join(timeout=10)
        if process.is_alive():
            process.kill()
            process.join()
        running.connection.close()
        self._child = None

    def _supervise(self) -> None:
        while (job := self._pool.inbox.get()) is not None:
            running = self._child
            if running is None:
                try:
                    running = self._spawn()  # before begin(): a child that cannot start
                except WorkerStartupError as error:  # leaves the job to be handed back
                    if not self._pool.closing:  # else shutdown() killed it
                        self._pool.on_fatal(error)
                    return
            if not job.begin():
                continue  # handed back while it waited
            self._pool.on_done(self._run(running, job))
            limit = self._pool.max_tasks_per_child
            if limit and running.tasks_run >= limit:
                self._retire()
        self._retire()

    def _run(self, running: _Child, job: Job) -> Outcome:
        running.tasks_run += 1
        with self._lock:
            self._job = job
        try:
            running.connection.send(job.claimed)
            answered = running.connection.poll(job.timeout)
            outcome, died = (running.connection.recv() if answered else None), False
        except (EOFError, OSError):
            outcome, died = None, True
        with self._lock:
            self._job = None
        if outcome is not None and not job.aborting.is_set():
            return outcome
        # Killed (by abort(), perhaps just after it answered), crashed or
        # overran: the child is not used again.
        if died:
            running.process.join(timeout=5)  # reap it, to read its exit code
        code = running.process.exitcode
        self._retire(kill=True)
        if outcome is not None:
            return outcome
        if job.aborting.is_set():
            return aborted_attempt(job, "its process was killed")
        if died:
            return crashed_attempt(
                job, self._pool.backend.crash_retries, f"the process running it {_ended(code)}"
            )
        return timed_out_attempt(job, "its process was killed")

    def abort(self, job: Job) -> None:
        with self._lock:
            if self._job is job and self._child is not None:
                self._child.process.kill()

    def kill_if_busy(self) -> None:
        """Kill the child if it does not exit at once (shutdown: its task was handed back)."""
        if (running := self._child) is not None and running.process.is_alive():
            running.process.join(timeout=0.5)
            if running.process.is_alive():
                running.process.kill()


def _ended(code: int | None) -> str:
    """How a child process ended, from its exit code."""
    if code is not None and code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited (exit code {code})"


class ProcessPool:
    def __init__(
        self,
        backend: WorkerStore,
        size: int,
        on_done: OnDone,
        on_fatal: Callable[[WorkerStartupError], None],
        max_tasks_per_child: int | None = None,
    ) -> None:
        self.backend = backend
        self.on_done = on_done
        self.on_fatal = on_fatal
        self.closing = False
        self.max_tasks_per_child = max_tasks_per_child
        self.context = multiprocessing.get_context("spawn")
        self.inbox: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._slots = [_Slot(self, number) for number in range(1, size + 1)]

    def submit(self, job: Job) -> None:
        self.inbox.put(job)

    def abort(self, job: Job) -> None:
        """Kill the child running ``job``: the only way to stop arbitrary code."""
        for slot in self._slots:
            slot.abort(job)

    def next_deadline(self) -> float | None:
        return None  # each slot watches its own child's deadline

    def expire(self) -> None:
        pass

    def shutdown(self) -> None:
        """Retire idle children; kill busy ones (their tasks were handed back)."""
        self.closing = True
        for _ in self._slots:
            self.inbox.put(None)
        for slot in self._slots:
            slot.kill_if_busy()
