"""django-tasks-q on PostgreSQL (database bench_taskq) or, with
BENCH_DATABASE=sqlite, on SQLite (bench/.data/taskq.sqlite3)."""

import json
import os

from bench.drivers.common import DATA, PG_HOST, PG_PORT, PG_USER

SECRET_KEY = "bench"
USE_TZ = True
INSTALLED_APPS = ["django_tasks_q", "bench.sites.taskq"]

if os.environ.get("BENCH_DATABASE") == "sqlite":
    DATA.mkdir(parents=True, exist_ok=True)  # a fresh clone has no bench/.data yet
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": DATA / "taskq.sqlite3",
            # As the project's README recommends for a queue on SQLite.
            "OPTIONS": {
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
            },
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "bench_taskq",
            "HOST": PG_HOST,
            "PORT": PG_PORT,
            "USER": PG_USER,
            # As for django-tasks-db (see its settings), though this worker keeps
            # its connection either way.
            "CONN_MAX_AGE": None,
        }
    }

TASKS = {
    "default": {
        "BACKEND": "django_tasks_q.backends.database.DatabaseBackend",
        "QUEUES": ["default"],
        # e.g. BENCH_TASKQ_OPTIONS='{"synchronous_commit": false}'
        "OPTIONS": json.loads(os.environ.get("BENCH_TASKQ_OPTIONS", "{}")),
    }
}
