from django.tasks import task

from bench.drivers.common import record_start


@task
def noop(*args):
    return None


@task
def stamp(index):
    record_start(index)
