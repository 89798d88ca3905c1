"""django-tasks-db's driver (Django's ORM reference backend), in the peers' environment.

It has no batch API (so no enqueue_bulk) and its ``db_worker`` runs one task at
a time (no concurrency knob).
"""

import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.sites.djtasksdb.settings")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django_tasks_db.models import DBTaskResult  # noqa: E402

from bench.drivers import common  # noqa: E402
from bench.sites.djtasksdb.tasks import noop, stamp  # noqa: E402

NAME = "django-tasks-db"
os.environ["BENCH_STAMPS"] = str(common.DATA / f"stamps-{NAME}.txt")


def setup():
    call_command("migrate", verbosity=0)


def reset():
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {DBTaskResult._meta.db_table}")


def worker(poll_interval):
    return [
        *(sys.executable, "-m", "django", "db_worker"),
        *("--no-reload", "--no-startup-delay", "--interval", str(poll_interval)),
    ]


def finished():
    return DBTaskResult.objects.filter(status="SUCCESSFUL").count()


def enqueue_single(n, *, poll_interval):
    reset()
    connection.ensure_connection()
    return common.enqueue_single(n, noop.enqueue)


def drain(n, *, poll_interval):
    reset()
    with transaction.atomic():  # untimed set-up: the fastest way it has
        for _ in range(n):
            noop.enqueue()
    return common.drain(n, worker(poll_interval), finished, f"{NAME}-drain")


def latency(n, *, poll_interval):
    reset()
    return common.latency(n, worker(poll_interval), stamp.enqueue, f"{NAME}-latency")


if __name__ == "__main__":
    common.main(
        setup,
        {"enqueue_single": enqueue_single, "drain": drain, "latency": latency},
    )
