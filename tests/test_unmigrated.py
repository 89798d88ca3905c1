"""A project that forgot ``manage.py migrate``: enqueue() and the worker say so
in one line, instead of a raw "no such table" (or a worker retrying for ever)."""

import os
import subprocess
import sys
from pathlib import Path

import dj_database_url
import psycopg
import pytest
from django.conf import settings

from .conftest import unavailable

ROOT = Path(__file__).resolve().parent.parent
# Every migration of the app, in order (they form one line).
MIGRATIONS = ", ".join(
    sorted(path.stem for path in (ROOT / "django_tasks_q" / "migrations").glob("0*.py"))
)


def _admin_connection() -> psycopg.Connection:
    config = dj_database_url.parse(settings.POSTGRES_URL)
    return psycopg.connect(
        host=config["HOST"],
        port=config["PORT"] or 5432,
        user=config["USER"],
        password=config["PASSWORD"],
        dbname="postgres",
        autocommit=True,
    )


@pytest.fixture(params=["sqlite", "postgres"])
def scratch_database(request, tmp_path):
    """The URL of an empty database: the project's, before ``migrate``."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'unmigrated.sqlite3'}"
        return
    if settings.POSTGRES_UNAVAILABLE:
        unavailable(settings.POSTGRES_UNAVAILABLE)
    config = dj_database_url.parse(settings.POSTGRES_URL)
    name = f"{config['NAME']}_unmigrated{os.environ.get('PYTEST_XDIST_WORKER', '')}"
    with _admin_connection() as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
        connection.execute(f'CREATE DATABASE "{name}"')
    yield settings.POSTGRES_URL.rpartition("/")[0] + f"/{name}"
    with _admin_connection() as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run(database_url: str, *command: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.projects.unmigrated",
        "TASKQ_SCRATCH_DATABASE": database_url,
    }
    if not settings.REDIS_UNAVAILABLE:
        env["TASKQ_SCRATCH_REDIS"] = settings.REDIS_URL
    return subprocess.run(
        [sys.executable, *command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_the_worker_exits_with_the_migrations_to_apply(scratch_database):
    done = run(scratch_database, "-m", "django", "runtaskworker", "--burst")
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr == (
        f"CommandError: Database 'default' lacks django_tasks_q migration(s) {MIGRATIONS}; "
        "run manage.py migrate --database default.\n"
    )


def test_a_redis_worker_needs_the_tables_only_to_copy_results(scratch_database):
    if settings.REDIS_UNAVAILABLE:
        unavailable(settings.REDIS_UNAVAILABLE)
    command = ("-m", "django", "runtaskworker", "--burst", "--backend")
    done = run(scratch_database, *command, "redis_with_results")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "lacks django_tasks_q migration(s)" in done.stderr
    assert "Traceback" not in done.stderr
    done = run(scratch_database, *command, "redis")
    assert done.returncode == 0, done.stdout + done.stderr


ENQUEUE = """
import django
django.setup()
from django_tasks_q.exceptions import QueueNotMigrated
from tests.projects.shop.tasks import send_receipt
try:
    send_receipt.enqueue(1)
except QueueNotMigrated as error:
    print(error)
"""


def test_enqueue_says_to_migrate(scratch_database):
    done = run(scratch_database, "-c", ENQUEUE)
    assert done.stdout == (
        "The queue's tables are not in database 'default': "
        "run manage.py migrate --database default.\n"
    ), done.stderr


@pytest.mark.parametrize("subcommand", ["status", "list"])
def test_taskq_says_to_migrate(scratch_database, subcommand):
    done = run(scratch_database, "-m", "django", "taskq", subcommand)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr == (
        f"CommandError: TASKS['default']: the database 'default' lacks django_tasks_q "
        f"migration(s) {MIGRATIONS}: run manage.py migrate --database default.\n"
    )
