"""One event loop, in its own thread, for ``async def`` tasks.

Async tasks run here side by side instead of each tying up a pool thread
(Django's ``task.call()`` would run each on a loop of its own, one at a
time). A timeout or an abort cancels the coroutine: unlike a thread, it
really stops.
"""

import asyncio
import threading

from ..backends.contract import WorkerStore
from .execution import Job, aborted_attempt, arun_attempt, timed_out_attempt
from .pool import OnDone


class AsyncioLoop:
    def __init__(self, backend: WorkerStore, size: int, on_done: OnDone) -> None:
        self._backend = backend
        self._on_done = on_done
        self._loop = asyncio.new_event_loop()
        # Tasks claimed ahead wait here, as they would in a pool's queue.
        self._slots = asyncio.Semaphore(size)
        self._running: dict[Job, asyncio.Task[None]] = {}  # touched on the loop's thread only
        threading.Thread(target=self._serve, name="taskq-asyncio", daemon=True).start()

    def _serve(self) -> None:
        try:
            self._loop.run_forever()
        finally:  # stopped by shutdown(): release its selector and sockets
            self._loop.close()

    def submit(self, job: Job) -> None:
        asyncio.run_coroutine_threadsafe(self._run(job), self._loop)

    async def _run(self, job: Job) -> None:
        async with self._slots:
            if not job.begin():
                return  # handed back while it waited
            running = asyncio.current_task()
            assert running is not None  # _run() is always a task: submit() made it one
            self._running[job] = running
            attempt = arun_attempt(self._backend, job.claimed, job.task, job.aborting)
            try:
                outcome = await asyncio.wait_for(attempt, job.timeout)
            except TimeoutError:
                outcome = timed_out_attempt(job, "it was cancelled")
            except asyncio.CancelledError:  # by abort()
                outcome = aborted_attempt(job, "its coroutine was cancelled")
            finally:
                del self._running[job]
        self._on_done(outcome)

    def abort(self, job: Job) -> None:
        """Cancel the job's coroutine, if it is still running."""

        def cancel() -> None:
            if running := self._running.get(job):
                running.cancel()

        self._loop.call_soon_threadsafe(cancel)

    def shutdown(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
