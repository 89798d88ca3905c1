"""Tasks outside the app's ``tasks`` module: a worker loads this module only
when the backend's ``task_modules`` option names it."""

from django_tasks_q import task


@task
def double(number: int) -> int:
    return 2 * number


@task
def triple(number: int) -> int:
    return 3 * number
