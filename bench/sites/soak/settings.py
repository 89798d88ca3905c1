"""The soak's site (``python -m bench.soak``): one store per run, chosen by SOAK_STORE.

``sqlite``: a file in SOAK_DATA; ``postgres``: the database at SOAK_POSTGRES;
``pgbouncer``: the same database through the PgBouncer at SOAK_PGBOUNCER, in
transaction pooling mode, its LISTEN on a direct connection (the
``listen_database`` option); ``redis``: the Redis database at SOAK_REDIS.
"""

import os
from pathlib import Path

import dj_database_url

STORE = os.environ.get("SOAK_STORE", "sqlite")
DATA = Path(os.environ.get("SOAK_DATA", "bench/.data/soak"))

SECRET_KEY = "soak"
USE_TZ = True
INSTALLED_APPS = ["django_tasks_q", "bench.sites.soak"]
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    # Warnings and up: recoveries, lost leases, outages; not a line per task.
    "loggers": {"django_tasks_q": {"handlers": ["console"], "level": "WARNING"}},
}

SQLITE = {
    "ENGINE": "django.db.backends.sqlite3",
    "NAME": DATA / "soak.sqlite3",
    # As the README recommends for a queue on SQLite.
    "OPTIONS": {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
    },
}

OPTIONS = {
    # A killed worker's tasks run again this soon after its last heartbeat.
    "lease": 5,
    # However often a task's workers are killed, it is run again, not failed
    # by policy: every task not SUCCESSFUL at the end is a loss.
    "crash_retries": 1_000_000,
    "poll_interval": 0.2,
}

if STORE in ("postgres", "pgbouncer"):
    DIRECT = dj_database_url.parse(os.environ["SOAK_POSTGRES"], conn_health_checks=True)
if STORE == "postgres":
    DATABASES = {"default": DIRECT}
elif STORE == "pgbouncer":
    DATABASES = {
        # As the README says for PgBouncer in transaction pooling mode.
        "default": {
            **dj_database_url.parse(os.environ["SOAK_PGBOUNCER"], conn_health_checks=True),
            "DISABLE_SERVER_SIDE_CURSORS": True,
            "OPTIONS": {"prepare_threshold": None},
        },
        "direct": DIRECT,
    }
    OPTIONS["listen_database"] = "direct"
else:
    # Redis: the queue makes no query here, enqueue() only asks this
    # connection whether it is in a transaction.
    DATABASES = {"default": SQLITE}

if STORE == "redis":
    TASKS = {
        "default": {
            "BACKEND": "django_tasks_q.backends.redis.RedisBackend",
            "OPTIONS": {**OPTIONS, "url": os.environ["SOAK_REDIS"]},
        }
    }
else:
    TASKS = {
        "default": {
            "BACKEND": "django_tasks_q.backends.database.DatabaseBackend",
            "OPTIONS": OPTIONS,
        }
    }
