"""What an operator does to the queue, declared once: cancel, abort and delete
waiting tasks; retry, re-run and delete finished ones; pause and resume
periodic schedules.

Each ``OperatorAction`` names the operation of ``backends/database/operations.py``
it runs on a queryset, the permission it needs, the question it asks first,
and what it says afterwards. The admin turns each into a list action (and a
button on the detail page, where it applies); ``taskq`` turns those it names
``command`` into subcommands. Neither writes an action of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from django.db.models import Model, QuerySet
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext_lazy

from .backends.database import operations
from .models import ResultStatus, Schedule, Task, TaskResult, TaskStatus

if TYPE_CHECKING:
    from django.utils.functional import _StrPromise

    Text = str | _StrPromise

Counts = dict[str, int]  # what an operation did, by name: {"cancelled": 3}


@dataclass(frozen=True)
class Confirmation:
    """The question the admin asks on a page of its own before the action runs."""

    title: Text
    question: Text
    button: Text


@dataclass(frozen=True)
class Tally:
    """One line of what an action did: ``text % counts[count]``."""

    count: str
    text: Text  # singular and plural, with one %d
    always: bool = True  # said even when the count is 0 (as a warning)


@dataclass(frozen=True)
class OperatorAction:
    """One thing an operator does to chosen rows, and all that is said of it."""

    name: str  # the admin action's name, which its forms post
    model: type[Model]
    description: Text  # in the admin's action menu
    permission: Literal["change", "delete"]
    operate: Callable[[QuerySet[Any]], Counts]
    tallies: tuple[Tally, ...]  # what the admin says it did
    # Said of the selected rows that no count took in (already started, gone...).
    left_alone: Text | None = None
    confirmation: Confirmation | None = None  # None: another action undoes it
    button: Text | None = None  # the detail page's button, for rows it is offered on
    offered: Callable[[Any], bool] = lambda row: True
    command: str | None = None  # the taskq subcommand
    command_help: str = ""
    summary: str = ""  # taskq's line, formatted with the counts

    def report(self, counts: Counts, selected: int | None) -> Iterator[tuple[str, bool]]:
        """The admin's lines, each with whether it is a warning. ``selected``:
        how many rows were chosen (None where ``left_alone`` is None)."""
        for tally in self.tallies:
            count = counts[tally.count]
            if count or tally.always:
                yield tally.text % count, not count
        if self.left_alone is not None and selected is not None:
            rest = selected - sum(counts.values())
            if rest > 0:
                yield self.left_alone % rest, True


LEFT_RUNNING = ngettext_lazy(
    "%d task was running or gone, and was left alone.",
    "%d tasks were running or gone, and were left alone.",
)
RESULTS_GONE = ngettext_lazy("%d result was gone.", "%d results were gone.")

CANCEL = OperatorAction(
    name="cancel_tasks",
    model=Task,
    description=_("Cancel selected waiting tasks"),
    permission="change",
    operate=lambda tasks: {"cancelled": operations.cancel(tasks)},
    tallies=(Tally("cancelled", ngettext_lazy("Cancelled %d task.", "Cancelled %d tasks.")),),
    left_alone=LEFT_RUNNING,
    confirmation=Confirmation(
        _("Cancel tasks"),
        _(
            "Cancel these tasks? Waiting, scheduled and blocked tasks leave the queue "
            "and are recorded as cancelled; running tasks are left to finish."
        ),
        _("Yes, cancel them"),
    ),
    button=_("Cancel"),
    offered=lambda task: task.status in TaskStatus.NOT_STARTED,
    command="cancel",
    command_help="Cancel waiting tasks (running ones are left to finish).",
    summary="Cancelled {cancelled} waiting task(s).",
)


def _abort(tasks: QuerySet[Task]) -> Counts:
    cancelled, stopping = operations.abort(tasks)
    return {"cancelled": cancelled, "aborting": stopping}


ABORT = OperatorAction(
    name="abort_tasks",
    model=Task,
    description=_("Abort selected tasks"),
    permission="change",
    operate=_abort,
    tallies=(
        Tally(
            "aborting",
            ngettext_lazy("Asked %d running task to stop.", "Asked %d running tasks to stop."),
            always=False,
        ),
        Tally(
            "cancelled",
            ngettext_lazy("Cancelled %d waiting task.", "Cancelled %d waiting tasks."),
            always=False,
        ),
    ),
    left_alone=ngettext_lazy(
        "%d task had finished, and was left alone.",
        "%d tasks had finished, and were left alone.",
    ),
    confirmation=Confirmation(
        _("Abort tasks"),
        _(
            "Abort these tasks? Running tasks are asked to stop: async tasks are "
            "cancelled and process-pool tasks killed at once; thread-pool tasks stop "
            "when they next check for it. Waiting and scheduled tasks are cancelled. "
            "All are recorded as cancelled."
        ),
        _("Yes, abort them"),
    ),
    button=_("Abort"),
    offered=lambda task: task.status == TaskStatus.RUNNING and not task.abort_requested_at,
    command="abort",
    command_help="Ask the workers of running tasks to stop them; cancel waiting ones.",
    summary="Asked {aborting} running task(s) to stop; cancelled {cancelled} waiting task(s).",
)

DELETE_TASKS = OperatorAction(
    name="delete_tasks",
    model=Task,
    description=_("Delete selected waiting tasks"),
    permission="delete",
    operate=lambda tasks: {"deleted": operations.delete_waiting(tasks)},
    tallies=(Tally("deleted", ngettext_lazy("Deleted %d task.", "Deleted %d tasks.")),),
    left_alone=LEFT_RUNNING,
    confirmation=Confirmation(
        _("Delete tasks"),
        _(
            "Delete these tasks? Waiting and scheduled tasks are deleted without a "
            "trace in the history; running tasks are left to finish."
        ),
        _("Yes, delete them"),
    ),
)

RETRY = OperatorAction(
    name="retry_results",
    model=TaskResult,
    description=_("Retry selected failed tasks"),
    permission="change",
    operate=lambda results: {"retried": operations.retry(results)},
    tallies=(
        Tally(
            "retried",
            ngettext_lazy(
                "Retried %d task: it is waiting in the queue.",
                "Retried %d tasks: they are waiting in the queue.",
            ),
        ),
    ),
    left_alone=ngettext_lazy(
        "%d task had succeeded (or was gone), and was left alone.",
        "%d tasks had succeeded (or were gone), and were left alone.",
    ),
    confirmation=Confirmation(
        _("Retry tasks"),
        _(
            "Retry these tasks? Each failed, cancelled or expired task goes back into "
            "the queue, ready now, with one more attempt; its id and history are kept. "
            "Successful ones are left alone (re-run those)."
        ),
        _("Yes, retry them"),
    ),
    button=_("Retry"),
    offered=lambda result: result.status in ResultStatus.UNSUCCESSFUL,
    command="retry",
    command_help="Put failed (or cancelled, expired) tasks back in the queue.",
    summary="Retried {retried} task(s).",
)

RERUN = OperatorAction(
    name="rerun_results",
    model=TaskResult,
    description=_("Re-run selected tasks as new tasks"),
    permission="change",
    operate=lambda results: {"enqueued": len(operations.rerun(results))},
    tallies=(Tally("enqueued", ngettext_lazy("Enqueued %d new task.", "Enqueued %d new tasks.")),),
    left_alone=RESULTS_GONE,
    confirmation=Confirmation(
        _("Re-run tasks"),
        _(
            "Enqueue a fresh copy of each of these tasks, with the same arguments and "
            "a new id? The results here are kept."
        ),
        _("Yes, re-run them"),
    ),
    button=_("Re-run"),
)

DELETE_RESULTS = OperatorAction(
    name="delete_results",
    model=TaskResult,
    description=_("Delete selected results"),
    permission="delete",
    operate=lambda results: {"deleted": operations.delete_results(results)},
    tallies=(Tally("deleted", ngettext_lazy("Deleted %d result.", "Deleted %d results.")),),
    left_alone=RESULTS_GONE,
    confirmation=Confirmation(
        _("Delete results"), _("Delete these results from the history?"), _("Yes, delete them")
    ),
)

PAUSE = OperatorAction(
    name="pause_schedules",
    model=Schedule,
    description=_("Pause selected schedules"),
    permission="change",
    operate=lambda schedules: {"paused": operations.pause_schedules(schedules)},
    tallies=(
        Tally(
            "paused",
            ngettext_lazy(
                "Paused %d schedule: it enqueues nothing until resumed.",
                "Paused %d schedules: they enqueue nothing until resumed.",
            ),
        ),
    ),
    command="pause",
    command_help="Stop schedules enqueueing until resumed.",
    summary="Paused {paused} schedule(s).",
)

RESUME = OperatorAction(
    name="resume_schedules",
    model=Schedule,
    description=_("Resume selected schedules"),
    permission="change",
    operate=lambda schedules: {"resumed": operations.resume_schedules(schedules)},
    tallies=(
        Tally(
            "resumed",
            ngettext_lazy(
                "Resumed %d schedule: it goes on from its next tick.",
                "Resumed %d schedules: they go on from their next tick.",
            ),
        ),
    ),
    command="resume",
    command_help="Start paused schedules again, from their next tick.",
    summary="Resumed {resumed} schedule(s).",
)

ACTIONS = (CANCEL, ABORT, DELETE_TASKS, RETRY, RERUN, DELETE_RESULTS, PAUSE, RESUME)


def actions_on(model: type[Model]) -> list[OperatorAction]:
    """The actions on ``model``'s rows, in the order the admin's menu lists them."""
    return [action for action in ACTIONS if action.model is model]


def commands_on(*models: type[Model]) -> dict[str, OperatorAction]:
    """The actions on these models' rows that ``taskq`` runs, by subcommand."""
    return {
        action.command: action
        for action in ACTIONS
        if action.model in models and action.command is not None
    }
