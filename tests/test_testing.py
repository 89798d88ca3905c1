"""``django_tasks_q.testing.run_tasks``: a project's tests run what they queued,
in process, through the real backend, inside or outside a test's transaction."""

from pathlib import Path

import pytest

from django_tasks_q import task
from django_tasks_q.compat import TASKS_PACKAGE, TaskResultStatus, task_finished
from django_tasks_q.testing import run_tasks

from . import tasks
from .conftest import postgres, redis_store

README = Path(__file__).resolve().parent.parent / "README.md"
SAMPLE = Path(__file__).resolve().parent / "test_testing_sample.py"


@task
def fan_out(backend, values):
    """Enqueues more work, as tasks do: run_tasks runs it too."""
    return [tasks.echo.using(backend=backend).enqueue(v).id for v in values]


@task(max_retries=1, retry_backoff=0, retry_jitter=False)
def always_fails():
    raise ValueError("always")


@pytest.mark.smoke
def test_runs_what_is_due_with_the_backends_extensions(queue_db):
    echo = tasks.echo.using(backend=queue_db.alias)
    first = echo.enqueue("a")
    many = tasks.double.using(backend=queue_db.alias).enqueue_many([(1,), (2,)])
    later = echo.using(run_after=3600).enqueue("later")  # not due: stays queued
    finished = []

    def on_finished(sender, task_result, **kwargs):
        finished.append(task_result.id)

    task_finished.connect(on_finished)
    try:
        results = run_tasks(queue_db.alias)
    finally:
        task_finished.disconnect(on_finished)
    assert [r.id for r in results] == [first.id, many[0].id, many[1].id]
    assert [r.status for r in results] == [TaskResultStatus.SUCCESSFUL] * 3
    assert [r.return_value for r in results] == [{"args": ["a"], "kwargs": {}}, 2, 4]
    assert finished == [r.id for r in results]
    later.refresh()
    assert later.status == TaskResultStatus.READY
    assert run_tasks(queue_db.alias) == []


@pytest.mark.smoke
def test_runs_what_tasks_enqueue_until_the_queue_is_empty(queue_db):
    fan_out.using(backend=queue_db.alias).enqueue(queue_db.alias, ["x", "y"])
    results = run_tasks(queue_db.alias)
    assert [r.task.module_path for r in results] == [
        "tests.test_testing.fan_out",
        "tests.tasks.echo",
        "tests.tasks.echo",
    ]
    assert [r.id for r in results[1:]] == results[0].return_value


def test_max_tasks_leaves_the_rest_queued(queue_db):
    tasks.echo.using(backend=queue_db.alias).enqueue_many([(1,), (2,), (3,)])
    assert len(run_tasks(queue_db.alias, max_tasks=2)) == 2
    assert queue_db.queued_count() == 1
    assert len(run_tasks(queue_db.alias)) == 1


@pytest.mark.smoke
def test_failures_are_retried_by_the_tasks_policy(queue_db):
    always_fails.using(backend=queue_db.alias).enqueue()
    [result] = run_tasks(queue_db.alias)
    assert (result.status, result.attempts) == (TaskResultStatus.FAILED, 2)
    assert [e.exception_class_path for e in result.errors] == ["builtins.ValueError"] * 2


def test_only_the_named_queues(queue_db):
    echo = tasks.echo.using(backend=queue_db.alias)
    echo.using(queue_name="emails").enqueue("mail")
    echo.enqueue("other")
    [result] = run_tasks(queue_db.alias, queues=["emails"])
    assert result.return_value == {"args": ["mail"], "kwargs": {}}


@pytest.mark.django_db(databases="__all__")  # the test's transaction, as in a TestCase
@pytest.mark.parametrize("backend", ["sqlite", "postgres", "redis"])
def test_tasks_enqueued_in_the_tests_transaction(backend, django_capture_on_commit_callbacks):
    alias = {"sqlite": "default", "postgres": "postgres", "redis": "redis"}[backend]
    if backend == "postgres":
        postgres()
    if backend == "redis":
        redis_store()
    echo = tasks.echo.using(backend=alias)
    # Redis is sent a task when the transaction commits; a test's never does.
    with django_capture_on_commit_callbacks(execute=True):
        queued = echo.enqueue("in the transaction")
    [result] = run_tasks(alias)
    assert (result.id, result.status) == (queued.id, TaskResultStatus.SUCCESSFUL)


def test_a_backend_of_another_kind_is_refused(settings):
    settings.TASKS = {
        **settings.TASKS,
        "immediate": {"BACKEND": f"{TASKS_PACKAGE}.backends.immediate.ImmediateBackend"},
    }
    with pytest.raises(TypeError, match="ImmediateBackend, not a django-tasks-q backend"):
        run_tasks("immediate")


def test_the_readme_shows_the_sample_this_suite_runs():
    assert SAMPLE.read_text() in README.read_text()
