"""Groups: many calls of a task enqueued as one (``QTask.enqueue_group``).

A ``GroupResult`` follows the group as a whole: its progress, a wait for
its end, cancelling what has not started, and its members' return values in
call order. A task can wait for the whole group: ``summarize.after(group)``.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .compat import DEFAULT_TASK_BACKEND_ALIAS, TaskResultStatus
from .task import QTaskResult, queue_backend


@dataclass(frozen=True, slots=True)
class GroupProgress:
    """How far a group has got: how many of its ``total`` members are in each state.

    Members an operator deleted are in none of them, so ``finished`` (which
    counts them) is ``total`` less those waiting or running.
    """

    total: int
    waiting: int = 0  # queued, not started (ready, scheduled, or blocked)
    running: int = 0
    succeeded: int = 0
    failed: int = 0  # failed or expired
    cancelled: int = 0

    @property
    def finished(self) -> int:
        return self.total - self.waiting - self.running

    @property
    def is_finished(self) -> bool:
        return self.finished == self.total


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupResult:
    """A group of calls enqueued together, as ``QTask.enqueue_group`` returns it.

    Keep its ``id`` to look it up later with ``GroupResult.get(id)``.
    """

    id: str
    backend: str
    task_path: str
    size: int
    enqueued_at: datetime

    @classmethod
    def get(cls, group_id: str, *, backend: str = DEFAULT_TASK_BACKEND_ALIAS) -> "GroupResult":
        """The group ``group_id`` of ``backend``; ``TaskResultDoesNotExist`` if
        there is none."""
        return queue_backend(backend).get_group(group_id)

    def progress(self) -> GroupProgress:
        """Count the members in each state now (two counts over an index)."""
        return queue_backend(self.backend).group_progress(self.id)

    def wait(self, timeout: float | None = None) -> "GroupResult":
        """Block until every member has finished and return the group;
        ``TimeoutError`` if they have not after ``timeout`` seconds (None:
        wait as long as it takes)."""
        queue_backend(self.backend).wait_for_group(self.id, timeout)
        return self

    def cancel(self) -> int:
        """Cancel the members that have not started (running ones finish);
        returns how many were cancelled."""
        return queue_backend(self.backend).cancel_group(self.id)

    def results(self) -> list[QTaskResult]:
        """Every member's result, in call order (members an operator deleted
        are missing)."""
        return queue_backend(self.backend).group_results(self.id)

    @property
    def return_values(self) -> list[Any]:
        """The members' return values, in call order. ``ValueError`` unless
        every member has succeeded, as Django's ``return_value`` does for a task."""
        results = self.results()
        pending = sum(not result.is_finished for result in results)
        failed = sum(result.status == TaskResultStatus.FAILED for result in results)
        deleted = self.size - len(results)
        if pending or failed or deleted:
            raise ValueError(
                f"Group {self.id} has no return values: of its {self.size} members, "
                f"{pending} have not finished, {failed} did not succeed, {deleted} were deleted."
            )
        return [result.return_value for result in results]
