from django.tasks import TaskResultStatus
from django.test import TestCase

from django_tasks_q import task
from django_tasks_q.testing import run_tasks


@task  # yours live in your app's tasks.py
def add(a, b):
    return a + b


class AddTests(TestCase):
    def test_add(self):
        result = add.enqueue(2, 3)
        add.enqueue_many([(1, 1), (2, 2)])
        add.using(run_after=3600).enqueue(0, 0)  # not due: run_tasks leaves it queued

        results = run_tasks()  # the "default" backend; or run_tasks("other alias")

        self.assertEqual([r.return_value for r in results], [5, 2, 4])
        result.refresh()
        self.assertEqual(result.status, TaskResultStatus.SUCCESSFUL)
