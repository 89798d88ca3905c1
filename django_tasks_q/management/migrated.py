"""Whether the app's tables are ready where a worker needs them: checked once,
at start, so that a forgotten ``migrate`` is one line, not a worker retrying
a missing table for ever."""

import logging
import time

from django.core.management.base import CommandError
from django.db import connections
from django.db.migrations.executor import MigrationExecutor

from ..backends.base import QueueBackend
from ..backoff import Outage

APP = "django_tasks_q"

logger = logging.getLogger("django_tasks_q.worker")


def unapplied_migrations(database: str) -> list[str]:
    """The app's migrations not yet applied to ``database``, in order."""
    executor = MigrationExecutor(connections[database])
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes(APP))
    return [migration.name for migration, _ in plan if migration.app_label == APP]


def require_migrated(backend: QueueBackend) -> None:
    """CommandError naming the migrations to apply, if ``backend``'s tables need any.

    A database that does not answer yet (a worker started before its server,
    as Compose and Kubernetes do) is waited for, one log line per back-off
    step, as the worker waits out an outage once it runs."""
    database = backend.tables_database
    if database is None:
        return
    outage = Outage(f"Database {database!r}", logger, first_traceback=False)
    while True:
        try:
            missing = unapplied_migrations(database)
            break
        except backend.transient_errors as error:
            connections[database].close()
            time.sleep(outage.failed(error))
    outage.reached()
    if missing:
        raise CommandError(
            f"Database {database!r} lacks {APP} migration(s) {', '.join(missing)}; "
            f"run manage.py migrate --database {database}."
        )
