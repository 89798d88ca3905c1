"""One event loop, in its own thread, for ``async def`` tasks.

Async tasks run here side by side instead of each tying up a pool thread
(Django's ``task.call()`` would run each on a loop of its own, one at a
time). A timeout cancels the coroutine: unlike a thread, it really stops.
"""

import asyncio
import threading
import time

from .execution import Job, arun_attempt, timed_out_attempt


class AsyncioLoop:
    def __init__(self, backend, on_done):
        self._backend = backend
        self._on_done = on_done
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, name="taskq-asyncio", daemon=True).start()

    def submit(self, job: Job) -> None:
        asyncio.run_coroutine_threadsafe(self._run(job), self._loop)

    async def _run(self, job: Job) -> None:
        job.started = time.monotonic()
        attempt = arun_attempt(self._backend, job.claimed, job.task)
        try:
            outcome = await asyncio.wait_for(attempt, job.timeout)
        except TimeoutError:
            outcome = timed_out_attempt(job, "it was cancelled")
        self._on_done(outcome)

    def shutdown(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
