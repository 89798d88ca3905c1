"""django-tasks-q on PostgreSQL (database bench_taskq, see common.database_name) or, with
BENCH_DATABASE=sqlite, on SQLite (bench/.data/taskq.sqlite3), or, with
BENCH_QUEUE=redis, with the Redis backend (Redis database 9)."""

import json
import os

from bench.drivers.common import (
    DATA,
    PG_HOST,
    PG_PORT,
    PG_USER,
    REDIS_DB_TASKQ,
    database_name,
    redis_url,
)

REDIS_QUEUE = os.environ.get("BENCH_QUEUE") == "redis"

SECRET_KEY = "bench"
USE_TZ = True
INSTALLED_APPS = ["django_tasks_q", "bench.sites.taskq"]

if REDIS_QUEUE or os.environ.get("BENCH_DATABASE") == "sqlite":
    DATA.mkdir(parents=True, exist_ok=True)  # a fresh clone has no bench/.data yet
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            # With Redis the queue makes no query: enqueue() only asks this
            # connection whether it is in a transaction (enqueue_on_commit).
            "NAME": DATA / ("taskq-redis.sqlite3" if REDIS_QUEUE else "taskq.sqlite3"),
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
            "NAME": database_name("taskq"),
            "HOST": PG_HOST,
            "PORT": PG_PORT,
            "USER": PG_USER,
            # As for django-tasks-db (see its settings), though this worker keeps
            # its connection either way.
            "CONN_MAX_AGE": None,
        }
    }

# e.g. BENCH_TASKQ_OPTIONS='{"synchronous_commit": false}', merged into OPTIONS.
EXTRA_OPTIONS = json.loads(os.environ.get("BENCH_TASKQ_OPTIONS", "{}"))

if REDIS_QUEUE:
    TASKS = {
        "default": {
            "BACKEND": "django_tasks_q.backends.redis.RedisBackend",
            "QUEUES": ["default"],
            "OPTIONS": {"url": redis_url(REDIS_DB_TASKQ), **EXTRA_OPTIONS},
        }
    }
else:
    TASKS = {
        "default": {
            "BACKEND": "django_tasks_q.backends.database.DatabaseBackend",
            "QUEUES": ["default"],
            "OPTIONS": EXTRA_OPTIONS,
        }
    }
