"""What the worker hands jobs to: the thread pool, the process pool, the asyncio loop.

The worker holds one ``Pool`` (threads or processes) and, with threads, an
asyncio loop beside it for ``async def`` tasks; it does not care which it has.
Each reports an attempt's ``Outcome`` through the ``OnDone`` it was given, from
its own thread.
"""

from collections.abc import Callable
from typing import Protocol

from ..backends.contract import Outcome
from .execution import Job

type OnDone = Callable[[Outcome], None]


class Executor(Protocol):
    """Runs the jobs it is given, and stops them when asked."""

    def submit(self, job: Job) -> None:
        """Run ``job`` when a slot is free; its outcome goes to ``OnDone``."""

    def abort(self, job: Job) -> None:
        """Stop ``job`` if it is running, as far as this executor can."""

    def shutdown(self) -> None:
        """Stop taking jobs; those still queued were handed back by the worker."""


class Pool(Executor, Protocol):
    """An executor of a fixed number of slots, which the worker asks about timeouts."""

    def next_deadline(self) -> float | None:
        """When (``time.monotonic()``) the next running attempt overruns its
        timeout, for the worker to wake then; None if no watch is due."""

    def expire(self) -> None:
        """Report the attempts past their timeout through ``OnDone``."""
