"""``store_result=False``: the status and errors are kept, the return value is not."""

import pytest

from django_tasks_q import task
from django_tasks_q.compat import InvalidTask, TaskResultStatus, task_backends

from . import tasks


def test_a_task_that_does_not_store_its_result(queue_db, run_worker):
    result = tasks.unstored_result.using(backend=queue_db.alias).enqueue()
    stored = tasks.unserialisable_return.using(backend=queue_db.alias).enqueue()
    run_worker(queue_db)

    fresh = task_backends[queue_db.alias].get_result(result.id)
    # The set it returned is not JSON: dropped, not checked, so no failure.
    assert fresh.status == TaskResultStatus.SUCCESSFUL
    assert fresh.return_value is None and fresh.errors == []
    # The same value from a task that stores it fails the task.
    assert task_backends[queue_db.alias].get_result(stored.id).status == TaskResultStatus.FAILED


def test_store_result_must_be_a_bool():
    with pytest.raises(InvalidTask, match="store_result must be True or False"):
        task(store_result="no")(tasks.add.func)
