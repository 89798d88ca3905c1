"""The process pool: each slot a child process, for CPU-bound work and hard
timeouts.

A supervisor thread per slot hands its child one task at a time over a pipe
and waits for the outcome. A child that overruns the task's timeout is killed
and replaced; one that dies (a crash, the OOM killer) fails that attempt and
is replaced; one that has run ``max_tasks_per_child`` tasks is retired, which
bounds the memory a leaky task can take. An aborted task's child is killed
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
import threading

from ..exceptions import WorkerStartupError
from . import child
from .execution import Job, aborted_attempt, failed_attempt, timed_out_attempt

logger = logging.getLogger("django_tasks_q.worker")


class ChildProcessDied(Exception):
    """The child process running the attempt exited before reporting on it."""


class _Slot:
    def __init__(self, pool: "ProcessPool", number: int):
        self._pool = pool
        self._name = f"taskq-process-{number}"
        self._process = None
        self._connection = None
        self._tasks_run = 0
        # The job the child is running; abort() (another thread) may kill the
        # child only while it runs that job.
        self._lock = threading.Lock()
        self._job: Job | None = None
        threading.Thread(target=self._supervise, name=self._name, daemon=True).start()

    def _spawn(self):
        """Start a child and wait until its start-up hooks have run."""
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
        try:
            failure = self._connection.recv()
        except (EOFError, OSError):
            self._process.join(timeout=5)
            failure = (
                f"A process-pool child exited while starting (exit code "
                f"{self._process.exitcode}); its output says why.",
                "",
            )
        if failure is not None:
            self._retire(kill=True)
            message, details = failure
            if details:
                logger.error("%s", details.rstrip())
            raise WorkerStartupError(message)

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
            if self._process is None:
                try:
                    self._spawn()  # before begin(): a child that cannot start
                except WorkerStartupError as error:  # leaves the job to be handed back
                    if not self._pool.closing:  # else shutdown() killed it
                        self._pool.on_fatal(error)
                    return
            if not job.begin():
                continue  # handed back while it waited
            self._pool.on_done(self._run(job))
            limit = self._pool.max_tasks_per_child
            if limit and self._tasks_run >= limit:
                self._retire()
        self._retire()

    def _run(self, job: Job):
        self._tasks_run += 1
        with self._lock:
            self._job = job
        try:
            self._connection.send(job.claimed)
            answered = self._connection.poll(job.timeout)
            outcome, died = (self._connection.recv() if answered else None), False
        except (EOFError, OSError):
            outcome, died = None, True
        with self._lock:
            self._job = None
        if outcome is not None and not job.aborting.is_set():
            return outcome
        # Killed (by abort(), perhaps just after it answered), crashed or
        # overran: the child is not used again.
        if died:
            self._process.join(timeout=5)  # reap it, to read its exit code
        code = self._process.exitcode
        self._retire(kill=True)
        if outcome is not None:
            return outcome
        if job.aborting.is_set():
            return aborted_attempt(job, "its process was killed")
        if died:
            error = ChildProcessDied(f"The process running the task exited (exit code {code}).")
            return failed_attempt(job.claimed, job.task, error, job.started)
        return timed_out_attempt(job, "its process was killed")

    def abort(self, job: Job) -> None:
        with self._lock:
            if self._job is job:
                self._process.kill()


class ProcessPool:
    def __init__(
        self, backend, size: int, on_done, on_fatal, max_tasks_per_child: int | None = None
    ):
        self.backend = backend
        self.on_done = on_done
        self.on_fatal = on_fatal  # called with a WorkerStartupError
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

    def next_deadline(self) -> None:
        return None  # each slot watches its own child's deadline

    def expire(self) -> None:
        pass

    def shutdown(self) -> None:
        """Retire idle children; kill busy ones (their tasks were handed back)."""
        self.closing = True
        for _ in self._slots:
            self.inbox.put(None)
        for slot in self._slots:
            process = slot._process
            if process is not None and process.is_alive():
                process.join(timeout=0.5)
                if process.is_alive():
                    process.kill()
