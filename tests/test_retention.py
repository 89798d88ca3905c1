"""result_ttl on the database backend: workers delete expired results."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from django_tasks_q.compat import task_backends
from django_tasks_q.models import TaskResult

pytestmark = pytest.mark.database_only  # Redis results expire by their own TTL


def results(queue_db):
    return TaskResult.objects.using(queue_db.database)


def make_results(queue_db):
    now = timezone.now()
    old = queue_db.insert_result(
        status="SUCCESSFUL", finished_at=now - timedelta(days=3), task_path="tests.tasks.add"
    )
    recent = queue_db.insert_result(
        status="FAILED", finished_at=now - timedelta(hours=1), task_path="tests.tasks.add"
    )
    return old, recent


def test_workers_delete_results_past_their_ttl(queue_db, run_worker):
    old, recent = make_results(queue_db)
    worker = run_worker(queue_db, env={"TASKQ_TEST_RESULT_TTL": str(2 * 24 * 3600)})
    assert {str(pk) for pk in results(queue_db).values_list("id", flat=True)} == {recent}
    assert "Deleted 1 result(s) past their result_ttl" in worker.output()


def test_without_ttl_results_are_kept(queue_db, run_worker):
    make_results(queue_db)
    run_worker(queue_db)
    assert results(queue_db).count() == 2


def test_prune_command_uses_the_ttl_by_default(queue_db, settings):
    old, recent = make_results(queue_db)
    tasks_setting = {**settings.TASKS}
    alias = queue_db.alias
    tasks_setting[alias] = {
        **tasks_setting[alias],
        "OPTIONS": {**tasks_setting[alias]["OPTIONS"], "result_ttl": 2 * 24 * 3600},
    }
    settings.TASKS = tasks_setting
    assert task_backends[alias].result_ttl == timedelta(days=2)
    call_command("taskq", "--backend", alias, "prune", stdout=StringIO())
    assert {str(pk) for pk in results(queue_db).values_list("id", flat=True)} == {recent}


def test_a_bad_ttl_is_reported_by_the_system_checks():
    from django_tasks_q.backends.database import DatabaseBackend

    backend = DatabaseBackend("broken", {"OPTIONS": {"result_ttl": 0}})
    assert "django_tasks_q.E008" in [error.id for error in backend.check()]
