"""Tasks outside ``<app>.tasks``: the ``task_modules`` option names more modules
the worker loads, and enqueueing a task no worker would find warns once."""

import warnings

import pytest

from django_tasks_q.backends.database import DatabaseBackend
from django_tasks_q.compat import TaskResultStatus, task_backends
from django_tasks_q.exceptions import TaskModuleNotLoaded

from . import jobs, tasks

TASK_MODULES = {"TASKQ_TEST_TASK_MODULES": "tests.jobs"}


def test_enqueueing_a_task_no_worker_loads_warns_once(queue_db):
    with pytest.warns(TaskModuleNotLoaded) as warned:
        jobs.triple.using(backend=queue_db.alias).enqueue(1)
        jobs.triple.using(backend=queue_db.alias).enqueue(2)
    assert [str(warning.message) for warning in warned] == [
        "tests.jobs.triple is in module 'tests.jobs', which no worker loads: workers "
        "import the 'tasks' module of each installed app and the modules listed in "
        f"TASKS[{queue_db.alias!r}]['OPTIONS']['task_modules']. Move the task to a tasks "
        "module, or add 'tests.jobs' to task_modules."
    ]


def test_a_task_in_an_apps_tasks_module_does_not_warn(queue_db):
    with warnings.catch_warnings():
        warnings.simplefilter("error", TaskModuleNotLoaded)
        tasks.echo.using(backend=queue_db.alias).enqueue()


@pytest.mark.filterwarnings("ignore::django_tasks_q.exceptions.TaskModuleNotLoaded")
def test_the_worker_loads_the_modules_in_task_modules(queue_db, run_worker):
    backend = task_backends[queue_db.alias]
    result = jobs.double.using(backend=queue_db.alias).enqueue(21)
    run_worker(queue_db)
    failed = backend.get_result(result.id)
    assert failed.status == TaskResultStatus.FAILED
    assert failed.errors[0].exception_class_path == "django_tasks_q.exceptions.TaskNotRegistered"

    result = jobs.double.using(backend=queue_db.alias).enqueue(21)
    run_worker(queue_db, env=TASK_MODULES)
    assert backend.get_result(result.id).return_value == 42


def test_a_task_in_a_listed_module_does_not_warn(db):
    backend = DatabaseBackend("default", {"OPTIONS": {"task_modules": ["tests.jobs"]}})
    assert backend.task_modules == ("tests.jobs",)
    assert not backend.check()
    with warnings.catch_warnings():
        warnings.simplefilter("error", TaskModuleNotLoaded)
        backend.enqueue(jobs.triple, [1], {})


@pytest.mark.parametrize("value", ["tests.jobs", ["tests jobs"], [""], [1]])
def test_task_modules_must_be_a_list_of_module_names(value):
    [message] = DatabaseBackend("b", {"OPTIONS": {"task_modules": value}}).check()
    assert (message.id, message.msg) == (
        "django_tasks_q.E009",
        f"TASKS['b']['OPTIONS']['task_modules'] must be a list of dotted module names, "
        f"not {value!r}.",
    )


def test_a_module_that_cannot_be_imported_stops_the_worker(queue_db, start_worker):
    worker = start_worker(queue_db, "--burst", env={"TASKQ_TEST_TASK_MODULES": "tests.nowhere"})
    assert worker.wait() == 1
    assert (
        f"CommandError: TASKS[{queue_db.alias!r}]['OPTIONS']['task_modules'] names "
        "'tests.nowhere', which does not exist." in worker.output()
    )
    assert "Traceback" not in worker.output()
