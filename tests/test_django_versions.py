"""Every Django that pyproject.toml allows (5.2 with the django-tasks
backport, 6.0 and later): Django 6.0's Task has no defaults for its fields, and
its ``@task`` takes no options.

.ci/run runs this file again under Django 6.0 and 5.2.
"""

import django
import pytest

from django_tasks_q import QTask, task
from django_tasks_q.compat import (
    DEFAULT_TASK_BACKEND_ALIAS,
    DEFAULT_TASK_PRIORITY,
    DEFAULT_TASK_QUEUE_NAME,
)
from django_tasks_q.compat import task as django_task

pytestmark = pytest.mark.smoke


def double(n: int) -> int:
    return 2 * n


def test_a_task_needs_only_its_function():
    """What Django 6.1 gives its Task's fields, QTask gives them on 6.0 too
    (else importing a tasks module fails: "missing ... 'run_after'")."""
    made = QTask(func=double)
    assert (made.priority, made.backend, made.queue_name, made.run_after) == (
        DEFAULT_TASK_PRIORITY,
        DEFAULT_TASK_BACKEND_ALIAS,
        DEFAULT_TASK_QUEUE_NAME,
        None,
    )


def test_our_decorator_takes_the_options_on_every_django(queue_db):
    retried = task(max_retries=3, backend=queue_db.alias)(double)
    retried.enqueue(1)
    [row] = queue_db.queued()
    assert (row["task_path"], row["max_attempts"]) == ("tests.test_django_versions.double", 4)


@pytest.mark.skipif(
    django.VERSION[:2] == (6, 0), reason="Django 6.0's @task takes only its own arguments"
)
def test_djangos_decorator_takes_the_options_but_on_django_6_0(queue_db):
    """Django 6.1's ``@task``, and the django-tasks backport's on Django 5.2."""
    retried = django_task(max_retries=3, backend=queue_db.alias)(double)
    assert isinstance(retried, QTask)
    retried.enqueue(1)
    [row] = queue_db.queued()
    assert row["max_attempts"] == 4
