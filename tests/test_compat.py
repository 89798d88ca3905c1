"""``django_tasks_q.compat``: the Tasks API is the one the project's own code
uses, ``django.tasks`` on Django 6, the django-tasks backport on Django 5.2.

.ci/run runs this file on every Django it supports; on 5.2 nothing is
simulated.
"""

import importlib
import tomllib
from pathlib import Path

import django
import pytest

from django_tasks_q import QTask, QTaskContext, compat
from django_tasks_q.testing import run_tasks

from . import tasks
from .conftest import run_without
from .models import Execution

pytestmark = pytest.mark.smoke

ROOT = Path(__file__).resolve().parent.parent
USERS_API = "django.tasks" if django.VERSION >= (6, 0) else "django_tasks"

WITHOUT_THE_BACKPORT = """
import django
if django.VERSION >= (6, 0):
    django.VERSION = (5, 2, 0, "final", 0)  # this Django has django.tasks: pretend it is 5.2
import django_tasks_q
"""


def double(n: int) -> int:
    return 2 * n


def test_on_django_5_2_without_the_backport_the_error_names_the_extra():
    done = run_without("django_tasks", WITHOUT_THE_BACKPORT)  # no django52 extra
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (
        "django.core.exceptions.ImproperlyConfigured: django-tasks-q on Django 5.2 needs "
        'the django-tasks backport: pip install "django-tasks-q[django52]" (or upgrade '
        "to Django 6.0+)."
    ), done.stderr
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert [requirement.split(">=")[0] for requirement in extras[compat.EXTRA]] == ["django-tasks"]


def test_the_api_is_the_one_the_project_imports():
    """A project on 5.2 writes ``from django_tasks import task``: that decorator
    makes this backend's QTask, and its exceptions and signals are ours."""
    api = importlib.import_module(USERS_API)
    exceptions = importlib.import_module(f"{USERS_API}.exceptions")
    signals = importlib.import_module(f"{USERS_API}.signals")
    assert compat.TASKS_PACKAGE == USERS_API
    assert (compat.task, compat.task_backends, compat.TaskResultStatus) == (
        api.task,
        api.task_backends,
        api.TaskResultStatus,
    )
    assert compat.TaskResultDoesNotExist is exceptions.TaskResultDoesNotExist
    assert compat.task_enqueued is signals.task_enqueued
    assert isinstance(api.task(double), QTask)


def test_the_projects_own_exceptions_catch_ours(queue_db):
    api = importlib.import_module(f"{USERS_API}.exceptions")
    invalid = api.InvalidTask if django.VERSION >= (6, 0) else api.InvalidTaskError
    with pytest.raises(invalid):
        QTask(func=double, backend=queue_db.alias, max_retries=-1)
    with pytest.raises(api.TaskResultDoesNotExist):
        compat.task_backends[queue_db.alias].get_result("nothing-by-this-id")


def test_a_task_that_takes_context_gets_ours(queue_db):
    """QTaskContext is the API's TaskContext, whichever package gives it."""
    assert issubclass(QTaskContext, importlib.import_module(USERS_API).TaskContext)
    queued = tasks.record.using(backend=queue_db.alias).enqueue(queue_db.database, "context")
    [result] = run_tasks(queue_db.alias)
    assert result.status == compat.TaskResultStatus.SUCCESSFUL
    ran = Execution.objects.using(queue_db.database).get()
    assert (ran.label, ran.task_id, ran.attempt) == ("context", queued.id, 1)
