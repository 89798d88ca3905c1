"""``manage.py taskq``: look at the queue and act on it from a shell.

Thin: it parses arguments and calls the backend's figures, and for retry,
cancel, abort, pause and resume the operator's actions declared in
``actions.py``, as the admin does. Tables for people, ``--json`` for scripts.
``status``, ``workers``, ``purge`` and ``health`` work on any backend; the others act on
the database backend's tables.
"""

import json
import math
import sys
from argparse import SUPPRESS, ArgumentParser, ArgumentTypeError
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError
from django.db.models import QuerySet
from django.utils import timezone

from django_tasks_q.actions import OperatorAction, commands_on
from django_tasks_q.backends.database import operations
from django_tasks_q.backends.database.held_back import held_back
from django_tasks_q.health import Health, check_health
from django_tasks_q.management.migrated import unapplied_migrations
from django_tasks_q.management.queue_backend import queue_backend
from django_tasks_q.models import ResultStatus, Schedule, Task, TaskResult, TaskStatus

from ...compat import DEFAULT_TASK_BACKEND_ALIAS

QUEUE_STATES = ("waiting", "scheduled", "running", "blocked")
# What tells whether a waiting task is held back by its limits (held_back.py).
LIMIT_COLUMNS = ("limit_key", "concurrency_limit", "rate_limit")
# Subcommands every backend answers; the rest work on TaskResult and Task rows.
ANY_BACKEND = ("status", "workers", "purge", "health")
RESULT_STATES = tuple(status.lower() for status in ResultStatus.values)
# The operator's actions, by subcommand: on tasks and results, and on schedules.
TASK_ACTIONS = commands_on(Task, TaskResult)
SCHEDULE_ACTIONS = commands_on(Schedule)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [["" if cell is None else str(cell) for cell in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    lines = [list(headers), ["-" * w for w in widths], *cells]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"


def when(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value else None


def whole_number(text: str) -> int:
    """An argument that is a whole number, 0 or more."""
    try:
        value = int(text)
    except ValueError:
        raise ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def days(text: str) -> float:
    """An argument that is a number of days, 0 or more, reaching back no
    further than a datetime can."""
    try:
        value = float(text)
    except ValueError:
        raise ArgumentTypeError(f"{text!r} is not a number of days") from None
    if not (math.isfinite(value) and value >= 0):
        raise ArgumentTypeError(f"must be a number of days, 0 or more, not {text}")
    try:
        datetime.now(UTC) - timedelta(days=value)
    except OverflowError:
        raise ArgumentTypeError(f"{text} days reaches back before the year 1") from None
    return value


def add_common_options(parser: ArgumentParser, *, defaults: bool) -> None:
    """The options of every subcommand, given before or after its name.

    After it, they have no defaults (SUPPRESS): a subcommand not given one keeps
    the value given before its name.
    """

    def default(value: Any) -> Any:
        return value if defaults else SUPPRESS

    parser.add_argument(
        "--backend",
        default=default(DEFAULT_TASK_BACKEND_ALIAS),
        help=f"The TASKS alias whose queue to use (default: {DEFAULT_TASK_BACKEND_ALIAS}).",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="Print JSON on one line, for scripts.",
    )
    parser.add_argument(
        "--indent",
        type=int,
        metavar="N",
        default=default(None),
        help="Print JSON indented by N spaces, for people (implies --json).",
    )


class Command(BaseCommand):
    help = (
        "Inspect and operate the task queue: status, list, retry, cancel, abort, purge, "
        "prune, workers, schedules."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        add_common_options(parser, defaults=True)
        common = ArgumentParser(add_help=False)
        add_common_options(common, defaults=False)
        commands = parser.add_subparsers(dest="subcommand", required=True, metavar="COMMAND")

        def add_command(name: str, help: str, into: Any = commands) -> ArgumentParser:
            sub: ArgumentParser = into.add_parser(name, help=help, parents=[common])
            return sub

        add_command("status", "Per queue: waiting, scheduled, running, failed.")

        listing = add_command("list", "List tasks (the queue, or finished ones).")
        listing.add_argument("--queue", help="Only this queue.")
        listing.add_argument("--task", help="Only this task (its dotted path).")
        listing.add_argument(
            "--status",
            choices=QUEUE_STATES + RESULT_STATES,
            help="waiting, scheduled, running or blocked (waiting for other tasks) in "
            "the queue; or successful, failed, cancelled or expired (the history). "
            "Default: the whole queue.",
        )
        listing.add_argument(
            "--limit", type=whole_number, default=50, help="At most this many (50)."
        )

        for name, action in TASK_ACTIONS.items():
            sub = add_command(name, action.command_help)
            sub.add_argument("ids", nargs="*", metavar="ID", help="Task ids.")
            sub.add_argument("--queue", help="Every one in this queue.")
            sub.add_argument("--task", help="Every one of this task (its dotted path).")
            sub.add_argument("--all", action="store_true", help="Every one there is.")

        purge = add_command("purge", "Delete every waiting task of a queue.")
        purge.add_argument("queue")
        purge.add_argument(
            "--no-input",
            action="store_false",
            dest="interactive",
            help="Don't ask for confirmation.",
        )

        prune = add_command("prune", "Delete old results, in batches.")
        prune.add_argument(
            "--older-than",
            type=days,
            metavar="DAYS",
            help="Delete results that finished more than DAYS days ago (default: "
            "the backend's result_ttl option).",
        )
        prune.add_argument(
            "--status",
            action="append",
            choices=RESULT_STATES,
            help="Only results with this status; repeatable.",
        )
        prune.add_argument(
            "--batch-size",
            type=int,
            default=operations.BATCH_SIZE,
            help="Rows per delete statement (%(default)s).",
        )

        workers = add_command("workers", "The registered workers.")
        workers.add_argument("--all", action="store_true", help="Include stale ones.")

        health = add_command(
            "health",
            "A probe: exit 0 if healthy, 1 if the store is unreachable or not migrated, "
            "2 if a queue has no live worker, 3 if the --worker one is not live.",
        )
        health.add_argument(
            "--queue",
            action="append",
            dest="queues",
            metavar="NAME",
            help="A queue that needs a live worker; repeatable (default: every one of QUEUES).",
        )
        health.add_argument(
            "--worker",
            metavar="ID",
            help="Check only that this worker (runtaskworker --worker-id ID) is live: "
            "a worker's liveness probe.",
        )

        schedules = add_command(
            "schedules", "Periodic tasks: list them (the default), pause or resume them."
        )
        actions = schedules.add_subparsers(dest="action", metavar="ACTION")
        for name, action in SCHEDULE_ACTIONS.items():
            sub = add_command(name, action.command_help, into=actions)
            sub.add_argument("names", nargs="*", metavar="NAME", help="Schedule names.")
            sub.add_argument("--all", action="store_true", help="Every schedule.")

    def handle(self, *args: Any, subcommand: str, backend: str, **options: Any) -> None:
        self.queue_backend = queue_backend(backend)
        self.using = self.queue_backend.database
        if subcommand not in ANY_BACKEND and self.queue_backend.queue_tables is None:
            # Its queue is not in these tables: don't report or change stale rows.
            raise CommandError(
                f"taskq {subcommand} works on the database backend's tables; "
                f"TASKS[{backend!r}] is {type(self.queue_backend).__name__} "
                f"(taskq {', '.join(ANY_BACKEND)} work with it)."
            )
        self.as_json = options["json"] or options["indent"] is not None
        self.indent = options["indent"]
        store_errors: tuple[type[BaseException], ...] = (
            DatabaseError,
            *self.queue_backend.transient_errors,
        )
        try:
            if declared := TASK_ACTIONS.get(subcommand):
                manager = declared.model._default_manager
                self.act(declared, self.selection(manager.using(self.using), **options))
            else:
                getattr(self, f"do_{subcommand}")(**options)
        except store_errors as error:
            raise CommandError(f"TASKS[{backend!r}]: {self.store_error(error)}") from None

    def store_error(self, error: BaseException) -> str:
        """One line for an error of the store: what to do, when it is a
        forgotten ``migrate``; else the error itself."""
        database = self.queue_backend.tables_database
        if database is not None and isinstance(error, DatabaseError):
            try:
                missing = unapplied_migrations(database)
            except DatabaseError:
                missing = []  # the database itself is away: say what it said
            if missing:
                return (
                    f"the database {database!r} lacks django_tasks_q migration(s) "
                    f"{', '.join(missing)}: run manage.py migrate --database {database}."
                )
        return f"{type(error).__name__}: {' '.join(str(error).split())}"

    def emit(
        self,
        data: Any,
        headers: Sequence[str] | None = None,
        rows: Sequence[Sequence[Any]] | None = None,
        summary: str | None = None,
    ) -> None:
        if self.as_json:
            # One line by default: for jq, grep and log pipelines.
            self.stdout.write(json.dumps(data, indent=self.indent, default=str))
            return
        if headers is not None:
            self.stdout.write(table(headers, rows) if rows else "(none)")
        if summary:
            self.stdout.write(summary)

    # -- looking ------------------------------------------------------------------

    def do_status(self, **options: Any) -> None:
        queues = self.queue_backend.queue_stats(self.queue_backend.queues)
        rows = [
            [
                q.queue,
                q.waiting,
                q.scheduled,
                q.running,
                q.blocked,
                q.failed_last_hour,
                age(q.oldest_waiting_seconds),
                q.finished_last_hour,
            ]
            for q in queues
        ]
        headers = ["QUEUE", "WAITING", "SCHEDULED", "RUNNING", "BLOCKED"]
        headers += ["FAILED 1H", "OLDEST", "DONE 1H"]
        self.emit([q.as_dict() for q in queues], headers, rows)

    def do_list(
        self, *, queue: str | None, task: str | None, status: str | None, limit: int, **options: Any
    ) -> None:
        now = timezone.now()
        rows: QuerySet[Any]
        if status in RESULT_STATES:
            assert status is not None  # for mypy: RESULT_STATES holds strings
            rows = TaskResult.objects.using(self.using).filter(status=status.upper())
            rows = rows.order_by("-finished_at")
        else:
            tasks = Task.objects.using(self.using).order_by("-id")
            rows = tasks.in_state(status, now) if status else tasks
        if queue:
            rows = rows.filter(queue_name=queue)
        if task:
            rows = rows.filter(task_path=task)
        columns = ["id", "task_path", "queue_name", "status", "priority", "attempts"]
        columns += ["enqueued_at", "run_after"]
        columns += ["finished_at"] if rows.model is TaskResult else ["worker_id"]
        limits = LIMIT_COLUMNS if rows.model is Task else ()
        found = list(rows.values(*columns, *limits)[:limit])
        queue_limits = getattr(self.queue_backend, "queue_limits", {})
        for row in found:
            reason = None
            if limits:  # a queued task: held back by its limits? Shown after WAITING.
                queued = Task(**{name: row.pop(name) for name in limits}, **row)
                reason = held_back(queued, queue_limits, now, self.using)
            row["id"] = str(row["id"])
            if row["status"] == TaskStatus.READY:
                row["status"] = "SCHEDULED" if row["run_after"] > now else "WAITING"
                if reason:
                    row["status"] += f" ({reason})"
            elif row["status"] == TaskStatus.BLOCKED:  # for other tasks, not for a worker
                row["status"] = "BLOCKED"
            for column in ("enqueued_at", "run_after", "finished_at"):
                if column in row:
                    row[column] = when(row[column])
        headers = ["ID", "TASK", "QUEUE", "STATUS", "PRIO", "ATTEMPTS", "ENQUEUED", "RUN AFTER"]
        headers += ["FINISHED"] if rows.model is TaskResult else ["WORKER"]
        self.emit(found, headers, [list(row.values()) for row in found])

    def do_workers(self, *, all: bool, **options: Any) -> None:
        found = self.queue_backend.workers()
        if not all:
            found = [w for w in found if w.live]
        self.emit(
            [
                {
                    "id": w.id,
                    "hostname": w.hostname,
                    "pid": w.pid,
                    "backend": w.backend,
                    "queues": w.queues,
                    "concurrency": w.concurrency,
                    "pool": w.pool,
                    "started_at": when(w.started_at),
                    "last_heartbeat_at": when(w.last_heartbeat_at),
                    "live": w.live,
                }
                for w in found
            ],
            ["ID", "HOST", "PID", "QUEUES", "CONCURRENCY", "POOL", "HEARTBEAT", "LIVE"],
            [
                [
                    w.id,
                    w.hostname,
                    w.pid,
                    ",".join(w.queues) or "(all)",
                    w.concurrency,
                    w.pool,
                    f"{age(w.heartbeat_age)} ago",
                    "yes" if w.live else "no",
                ]
                for w in found
            ],
        )

    def do_health(self, *, queues: list[str] | None, worker: str | None, **options: Any) -> None:
        queues = queues or sorted(self.queue_backend.queues)
        health, message = check_health(self.queue_backend, queues, worker, timezone.now())
        if health is not Health.HEALTHY:
            raise CommandError(message, returncode=health)
        self.emit({"health": health.name.lower(), "message": message}, summary=message)

    # -- acting -------------------------------------------------------------------

    def selection(
        self,
        queryset: QuerySet[Any],
        *,
        ids: list[str],
        queue: str | None,
        task: str | None,
        all: bool,
        **options: Any,
    ) -> QuerySet[Any]:
        if not (ids or queue or task or all):
            raise CommandError("Say which tasks: give ids, --queue, --task, or --all.")
        if ids:
            try:
                queryset = queryset.filter(pk__in=operations.parse_ids(ids))
            except ValueError as error:
                raise CommandError(error) from None
        if queue:
            queryset = queryset.filter(queue_name=queue)
        if task:
            queryset = queryset.filter(task_path=task)
        return queryset

    def act(self, declared: OperatorAction, queryset: QuerySet[Any]) -> None:
        counts = declared.operate(queryset)
        self.emit(counts, summary=declared.summary.format(**counts))

    def do_purge(self, *, queue: str, interactive: bool, **options: Any) -> None:
        if interactive:
            if not sys.stdin.isatty():
                raise CommandError("Not a terminal to ask for confirmation: use --no-input.")
            answer = input(f"Delete every waiting task in queue {queue!r}? Type 'yes': ")
            if answer != "yes":
                raise CommandError("Purge cancelled.")
        count = self.queue_backend.purge(queue)
        self.emit(
            {"purged": count, "queue": queue},
            summary=f"Deleted {count} waiting task(s) from queue {queue!r}.",
        )

    def do_prune(
        self, *, older_than: float | None, status: list[str] | None, batch_size: int, **options: Any
    ) -> None:
        if older_than is None:
            ttl = self.queue_backend.result_ttl
            if ttl is None:
                raise CommandError("Give --older-than, or set the backend's result_ttl option.")
            older_than = ttl.total_seconds() / 86400
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        count = operations.prune(
            timedelta(days=older_than),
            using=self.using,
            statuses=[s.upper() for s in status] if status else None,
            batch_size=batch_size,
        )
        self.emit(
            {"pruned": count},
            summary=f"Deleted {count} result(s) older than {older_than:g} day(s).",
        )

    # -- periodic tasks -----------------------------------------------------------

    def do_schedules(self, *, action: str | None = None, **options: Any) -> None:
        rows = Schedule.objects.using(self.using).order_by("name")
        if action is None:
            self.list_schedules(rows)
            return
        names, every = options["names"], options["all"]
        if not (names or every):
            raise CommandError(f"Say which schedules to {action}: give names, or --all.")
        if names:
            unknown = sorted(
                set(names) - set(rows.filter(name__in=names).values_list("name", flat=True))
            )
            if unknown:
                raise CommandError(
                    f"No schedule named {', '.join(unknown)}; see `taskq schedules`."
                )
            rows = rows.filter(name__in=names)
        self.act(SCHEDULE_ACTIONS[action], rows)

    def list_schedules(self, rows: QuerySet[Schedule]) -> None:
        found = [
            {
                "name": row.name,
                "task_path": row.task_path,
                "description": row.description,
                "paused": row.paused,
                "next_tick_at": None if row.paused else when(row.next_tick_at),
                "last_tick_at": when(row.last_tick_at),
                "last_task_id": row.last_task_id and str(row.last_task_id),
            }
            for row in rows
        ]
        self.emit(
            found,
            ["NAME", "TASK", "SCHEDULE", "PAUSED", "NEXT TICK", "LAST TICK", "LAST TASK"],
            [
                [
                    row["name"],
                    row["task_path"],
                    row["description"],
                    "yes" if row["paused"] else "no",
                    row["next_tick_at"] or "-",
                    row["last_tick_at"] or "-",
                    row["last_task_id"] or "-",
                ]
                for row in found
            ],
        )
