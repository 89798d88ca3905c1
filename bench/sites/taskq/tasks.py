from bench.drivers.common import record_start
from django_tasks_q import task


@task
def noop(*args):
    return None


@task
def stamp(index):
    record_start(index)
