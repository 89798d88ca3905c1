"""Whether the app's tables are ready where a worker needs them: checked once,
at start, so that a forgotten ``migrate`` is one line, not a worker retrying
a missing table for ever."""

from django.core.management.base import CommandError
from django.db import connections
from django.db.migrations.executor import MigrationExecutor

from ..backends.base import QueueBackend

APP = "django_tasks_q"


def unapplied_migrations(database: str) -> list[str]:
    """The app's migrations not yet applied to ``database``, in order."""
    executor = MigrationExecutor(connections[database])
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes(APP))
    return [migration.name for migration, _ in plan if migration.app_label == APP]


def require_migrated(backend: QueueBackend) -> None:
    """CommandError naming the migrations to apply, if ``backend``'s tables need any."""
    database = backend.tables_database
    if database is None:
        return
    if missing := unapplied_migrations(database):
        raise CommandError(
            f"Database {database!r} lacks {APP} migration(s) {', '.join(missing)}; "
            f"run manage.py migrate --database {database}."
        )
