"""Test settings: the test project, plus PostgreSQL and Redis queues when they answer.

Every behaviour test runs once per backend alias in TASKS: "default" (SQLite),
"postgres" (TASKQ_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/taskq)
and "redis" (TASKQ_REDIS_URL, default redis://127.0.0.1:6379/5; the tests
flush that logical database); tests/test_pgbouncer.py adds "pgbouncer"
(TASKQ_PGBOUNCER_URL, default postgres://postgres@127.0.0.1:6432/taskq).
With TASKQ_REDIS_CLUSTER_URL (a node of a Redis Cluster, e.g.
redis://127.0.0.1:7001/0) "redis" is that cluster instead, with the
"cluster" option. A worker subprocess is pointed at the test databases by
TASKQ_DB_NAMES.
"""

import json
import os

import dj_database_url
import psycopg
import redis
from redis.cluster import RedisCluster

from testproject.settings import *  # noqa: F403
from testproject.settings import BASE_DIR, INSTALLED_APPS, SQLITE_OPTIONS

INSTALLED_APPS = [*INSTALLED_APPS, "tests"]
POSTGRES_URL = os.environ.get("TASKQ_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/taskq")
REDIS_URL = os.environ.get("TASKQ_REDIS_URL", "redis://127.0.0.1:6379/5")
REDIS_CLUSTER = bool(os.environ.get("TASKQ_REDIS_CLUSTER_URL"))

# Under pytest-xdist each test process ("gw0", "gw1", ...) has its own
# databases: pytest-django suffixes the SQL ones; here the Redis logical
# database goes up by one per process, and the key prefix (which also names
# the pub/sub channel, shared by all logical databases) differs too. A
# cluster has only database 0: there the prefix alone keeps processes apart,
# and the client name tells their connections apart (see RedisStore).
# Worker subprocesses inherit PYTEST_XDIST_WORKER, so they agree.
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
if REDIS_CLUSTER:
    REDIS_URL = f"{os.environ['TASKQ_REDIS_CLUSTER_URL']}?client_name=taskq-tests{XDIST_WORKER}"
elif XDIST_WORKER:
    _base, _, _number = REDIS_URL.rpartition("/")
    REDIS_URL = f"{_base}/{int(_number or 0) + int(XDIST_WORKER.removeprefix('gw'))}"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": BASE_DIR / "tests" / "db.sqlite3",
        # A file, not memory: worker processes must see the test database.
        "TEST": {"NAME": BASE_DIR / "tests" / "test-db.sqlite3"},
        "OPTIONS": SQLITE_OPTIONS,
    }
}
TASKS = {
    "default": {
        "BACKEND": "django_tasks_q.backends.database.DatabaseBackend",
        "QUEUES": ["default", "emails", "other"],
        "OPTIONS": {
            "poll_interval": 0.05,
            # Worker subprocesses of the recovery tests use a short lease.
            "lease": float(os.environ.get("TASKQ_TEST_LEASE", 60)),
        },
    }
}
if os.environ.get("TASKQ_TEST_RESULT_TTL"):  # the retention tests' workers
    TASKS["default"]["OPTIONS"]["result_ttl"] = int(os.environ["TASKQ_TEST_RESULT_TTL"])
if os.environ.get("TASKQ_TEST_CRASH_RETRIES"):  # the recovery tests' workers
    TASKS["default"]["OPTIONS"]["crash_retries"] = int(os.environ["TASKQ_TEST_CRASH_RETRIES"])
if os.environ.get("TASKQ_TEST_QUEUE_LIMITS"):  # the limits tests' workers
    TASKS["default"]["OPTIONS"]["queue_limits"] = json.loads(os.environ["TASKQ_TEST_QUEUE_LIMITS"])
if os.environ.get("TASKQ_TEST_TASK_MODULES"):  # the task_modules tests' workers
    TASKS["default"]["OPTIONS"]["task_modules"] = [os.environ["TASKQ_TEST_TASK_MODULES"]]


def _unavailable(server: str, url: str, default_port: int) -> str:
    """Why the PostgreSQL server (or pooler) at ``url`` can't be used, or "" when it can."""
    config = dj_database_url.parse(url)
    try:
        psycopg.connect(
            host=config["HOST"],
            port=config["PORT"] or default_port,
            user=config["USER"],
            password=config["PASSWORD"],
            dbname="postgres",
            connect_timeout=3,
        ).close()
    except psycopg.Error as error:
        return f"{server} at {url} does not answer: {error}".strip()
    return ""


# A worker subprocess uses the databases its test run created (TASKQ_DB_NAMES):
# the run checked they answer, and a test may start a worker before they do.
RUN_DATABASES: dict[str, str] = json.loads(os.environ.get("TASKQ_DB_NAMES", "{}"))

POSTGRES_UNAVAILABLE = (
    "" if "postgres" in RUN_DATABASES else _unavailable("PostgreSQL", POSTGRES_URL, 5432)
)
if not POSTGRES_UNAVAILABLE:
    DATABASES["postgres"] = dj_database_url.parse(POSTGRES_URL)
    TASKS["postgres"] = {
        **TASKS["default"],
        "OPTIONS": {**TASKS["default"]["OPTIONS"], "database": "postgres"},
    }


# PgBouncer in transaction pooling mode (TASKQ_PGBOUNCER_URL) in front of the
# same PostgreSQL server: "pgbouncer" is the "postgres" test database reached
# through it, set up as the README says. Its backend (PGBOUNCER_TASKS) is in
# TASKS only where the PgBouncer tests put it (and in their workers), so the
# other tests do not meet the same queue under a second alias.
PGBOUNCER_URL = os.environ.get("TASKQ_PGBOUNCER_URL", "postgres://postgres@127.0.0.1:6432/taskq")


PGBOUNCER_UNAVAILABLE = POSTGRES_UNAVAILABLE or _unavailable("PgBouncer", PGBOUNCER_URL, 6432)
if not PGBOUNCER_UNAVAILABLE:
    DATABASES["pgbouncer"] = {
        **dj_database_url.parse(PGBOUNCER_URL),
        "DISABLE_SERVER_SIDE_CURSORS": True,
        "OPTIONS": {"prepare_threshold": None},
        "TEST": {"MIRROR": "postgres"},
    }
    PGBOUNCER_TASKS = {
        **TASKS["default"],
        "OPTIONS": {
            **TASKS["default"]["OPTIONS"],
            "database": "pgbouncer",
            "listen_database": "postgres",
        },
    }
    if os.environ.get("TASKQ_TEST_PGBOUNCER"):  # the PgBouncer tests' workers
        TASKS["pgbouncer"] = PGBOUNCER_TASKS


def _redis_unavailable() -> str:
    """Why Redis can't be used, or "" when it can."""
    try:
        client = RedisCluster if REDIS_CLUSTER else redis.Redis
        client.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except redis.RedisError as error:
        return f"Redis at {REDIS_URL} does not answer: {error}".strip()
    return ""


REDIS_UNAVAILABLE = _redis_unavailable()
if not REDIS_UNAVAILABLE:
    TASKS["redis"] = {
        **TASKS["default"],
        "BACKEND": "django_tasks_q.backends.redis.RedisBackend",
        "OPTIONS": {
            **TASKS["default"]["OPTIONS"],
            "url": REDIS_URL,
            "prefix": f"taskq{XDIST_WORKER}",
            "cluster": REDIS_CLUSTER,
        },
    }

# In a worker subprocess: use the databases the test run created.
for alias, name in RUN_DATABASES.items():
    DATABASES[alias]["NAME"] = name
