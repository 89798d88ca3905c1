"""PgBouncer in transaction pooling mode in front of PostgreSQL (README,
"PgBouncer"): enqueues, claims and records go through it; LISTEN, which a
pooled session cannot hold, goes through the ``listen_database`` option's
direct connection."""

import threading
import time

import psycopg
import pytest
from django.conf import settings
from django.core import checks
from django.db import connections

from django_tasks_q.backends.database import DatabaseBackend
from django_tasks_q.compat import TaskResultStatus, task_backends
from django_tasks_q.models import Task

from . import tasks
from .conftest import unavailable, wait_until
from .stores import DatabaseStore

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")
WORKER_ENV = {"TASKQ_TEST_PGBOUNCER": "1"}


@pytest.fixture
def pgbouncer_db(transactional_db, settings):
    """The "postgres" test database through PgBouncer, as TASKS["pgbouncer"]."""
    if "pgbouncer" not in settings.DATABASES:
        unavailable(settings.PGBOUNCER_UNAVAILABLE)
    settings.TASKS = {**settings.TASKS, "pgbouncer": settings.PGBOUNCER_TASKS}
    yield DatabaseStore("pgbouncer", "pgbouncer", "postgresql")
    # Drop PgBouncer's server connections to the test database, or they keep
    # it from being dropped at the end of the run.
    connection = connections["pgbouncer"]
    name = connection.settings_dict["NAME"]
    connection.close()
    admin = {**connection.get_connection_params(), "dbname": "pgbouncer", "autocommit": True}
    admin.pop("prepare_threshold", None)
    with psycopg.connect(**admin) as console:
        console.execute(f"KILL {name}")
        console.execute(f"RESUME {name}")


def test_enqueue_claim_and_record_through_pgbouncer(pgbouncer_db, start_worker):
    # More statements of each kind than psycopg's prepare_threshold (5), one
    # at a time and in bulk: prepared statements would fail on pooled sessions.
    results = [tasks.add.using(backend="pgbouncer").enqueue(i, i) for i in range(20)]
    results += tasks.add.using(backend="pgbouncer").enqueue_many([(i, 1) for i in range(200)])
    worker = start_worker(pgbouncer_db, "--concurrency", "4", env=WORKER_ENV)
    wait_until(lambda: pgbouncer_db.finished_count() == len(results), message="every task")
    worker.signal()
    assert worker.wait() == 0

    backend = task_backends["pgbouncer"]
    assert {backend.get_result(r.id).status for r in results} == {TaskResultStatus.SUCCESSFUL}
    assert backend.get_result(results[-1].id).return_value == 200
    assert "Error" not in worker.output(), worker.output()


def test_an_idle_worker_is_woken_through_the_direct_listen_connection(pgbouncer_db, start_worker):
    # Poll and heartbeat so rarely that only the notification can explain a pickup.
    worker = start_worker(
        pgbouncer_db, "--poll-interval", "600", env={**WORKER_ENV, "TASKQ_TEST_LEASE": "2400"}
    )
    wait_until(lambda: "started" in worker.output(), message="the worker to start")
    time.sleep(0.5)  # let it go idle
    backend = task_backends["pgbouncer"]
    for i in range(3):
        result = tasks.add.using(backend="pgbouncer").enqueue(i, i)
        wait_until(
            lambda r=result: backend.get_result(r.id).is_finished,
            message="the notification to wake the worker",
        )
    worker.signal()
    assert worker.wait() == 0


def test_wait_is_woken_through_the_direct_listen_connection(
    pgbouncer_db, start_worker, tmp_path, monkeypatch
):
    backend, release = task_backends["pgbouncer"], tmp_path / "release"
    result = tasks.wait_for_file.using(backend="pgbouncer").enqueue("pgbouncer", str(release))
    start_worker(pgbouncer_db, env=WORKER_ENV)
    wait_until(lambda: backend.get_result(result.id).status == TaskResultStatus.RUNNING)
    # Look again so rarely that only the notification can end the wait in time.
    monkeypatch.setattr(backend, "poll_interval", 600)
    returned = threading.Event()

    def waiter():
        try:
            backend.wait_for_result(result.id, 60)  # TimeoutError after 60 s
            returned.set()
        finally:
            connections.close_all()

    waited = threading.Thread(target=waiter, daemon=True)
    waited.start()
    wait_until(
        lambda: Task.objects.using("postgres").get(pk=result.id).has_dependents,
        message="the waiter to mark the task",
    )
    release.touch()
    waited.join()
    assert returned.is_set()
    assert backend.get_result(result.id).return_value == "released"


def test_listen_database_must_name_a_postgresql_database():
    backend = DatabaseBackend("queue", {"OPTIONS": {"listen_database": "default"}})
    [error] = [m for m in backend.check() if m.level == checks.ERROR]
    assert error.msg.startswith(
        "TASKS['queue']['OPTIONS']['listen_database'] must be None or the alias of a "
        "PostgreSQL database in DATABASES ("
    ), error.msg
    assert settings.DATABASES["default"]["ENGINE"].endswith("sqlite3")
