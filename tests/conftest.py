import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import django
import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connections
from django.test import Client

from .stores import Backend, DatabaseStore, RedisStore

ROOT = Path(__file__).resolve().parent.parent
# The README's sample imports django.tasks, as a project on Django 6 does.
collect_ignore = ["test_testing_sample.py"] if django.VERSION < (6, 0) else []
REQUIRE_SERVICES = os.environ.get("TASKQ_REQUIRE_SERVICES") == "1"


def unavailable(reason: str):
    """Skip a test whose server is down, or fail it where CI requires services."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (TASKQ_REQUIRE_SERVICES=1 turns this skip into a failure)")
    pytest.skip(reason)


def postgres() -> Backend:
    if "postgres" not in settings.TASKS:
        unavailable(settings.POSTGRES_UNAVAILABLE)
    return DatabaseStore("postgres", "postgres", "postgresql")


def redis_store() -> Backend:
    if "redis" not in settings.TASKS:
        unavailable(settings.REDIS_UNAVAILABLE)
    store = RedisStore("redis", "default", "redis")
    store.flush()
    return store


def run_without(module: str, script: str) -> subprocess.CompletedProcess:
    """``script`` in a fresh interpreter where ``import <module>`` fails, as
    when the extra that brings it is not installed."""
    return subprocess.run(
        [sys.executable, "-c", f"import sys\nsys.modules[{module!r}] = None\n{script}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "database_only: about the SQL tables; runs on the database backends only"
    )
    config.addinivalue_line(
        "markers",
        "redis: runs on the Redis backend (set by pytest_collection_modifyitems; "
        ".ci/run runs these again on a Redis Cluster)",
    )
    config.addinivalue_line(
        "markers",
        "smoke: the subset .ci/run runs on every other Django and Python (pytest -m smoke)",
    )
    config.addinivalue_line(
        "markers",
        "own_redis_server: a Redis test whose worker uses a redis-server of the test's own, "
        "never the suite's; .ci/run's Redis Cluster leg leaves it out",
    )


@pytest.fixture(params=["sqlite", "postgres", "redis"])
def backend(request) -> Backend:
    if request.param == "postgres":
        return postgres()
    if request.param == "redis":
        return redis_store()
    return DatabaseStore("default", "default", "sqlite")


@pytest.fixture
def queue_db(backend, transactional_db):
    """The backend, with committed data that worker processes can see."""
    return backend


@pytest.fixture
def superuser():
    """A test client logged in as a superuser, for the admin."""
    User.objects.create_superuser("root", password="pw")
    client = Client()
    client.login(username="root", password="pw")
    return client


@pytest.fixture
def postgres_queue_db(transactional_db):
    """Like ``queue_db``, for behaviour only PostgreSQL has."""
    return postgres()


@pytest.fixture
def redis_queue_db(transactional_db):
    """Like ``queue_db``, for behaviour only Redis has."""
    return redis_store()


@pytest.fixture(params=["postgres", "redis"])
def server_queue_db(request, transactional_db):
    """The backends with a server: connections to cut, enqueues that wake workers."""
    return postgres() if request.param == "postgres" else redis_store()


def pytest_collection_modifyitems(config, items):
    # Every test may touch either database; worker tests need real commits.
    fixtures = {"queue_db", "postgres_queue_db", "redis_queue_db", "server_queue_db"}
    for item in items:
        if fixtures & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.django_db(transaction=True, databases="__all__"))
        if _on_redis(item):
            item.add_marker(pytest.mark.redis)
    # The admin, taskq, operations and metrics work on the SQL tables.
    off_topic = [
        item
        for item in items
        if item.get_closest_marker("database_only")
        and getattr(item, "callspec", None)
        and item.callspec.params.get("backend") == "redis"
    ]
    if off_topic:
        config.hook.pytest_deselected(items=off_topic)
        items[:] = [item for item in items if item not in off_topic]


def _on_redis(item: pytest.Item) -> bool:
    """Whether a test runs on the Redis backend: parametrised for it, or
    about what only Redis has."""
    params = item.callspec.params if hasattr(item, "callspec") else {}
    return (
        params.get("backend") == "redis"
        or params.get("server_queue_db") == "redis"
        or "redis_queue_db" in getattr(item, "fixturenames", ())
        or item.path.name == "test_redis.py"
    )


class WorkerProcess:
    """``manage.py runtaskworker`` in a real process, on the test databases."""

    def __init__(self, backend: Backend, *args: str, log: Path, env: dict | None = None):
        names = {alias: str(connections[alias].settings_dict["NAME"]) for alias in connections}
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "TASKQ_DB_NAMES": json.dumps(names),
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.log = log
        self._log_file = open(log, "ab")  # noqa: SIM115 - closed in wait()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "django", "runtaskworker", "--backend", backend.alias, *args],
            cwd=ROOT,
            env=env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )

    def signal(self, sig=signal.SIGTERM):
        self.process.send_signal(sig)

    def wait(self, timeout=120) -> int:
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self._log_file.close()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def start_worker(tmp_path):
    """Start worker processes; any still running at the end are killed."""
    workers = []

    def start(backend: Backend, *args: str, env: dict | None = None) -> WorkerProcess:
        log = tmp_path / f"worker-{len(workers)}.log"
        worker = WorkerProcess(backend, *args, log=log, env=env)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait()
        print(f"--- {worker.log.name}\n{worker.output()}")


@pytest.fixture
def run_worker(start_worker):
    """Run a worker in --burst mode to the end and check it exited cleanly."""

    def run(backend: Backend, *args: str, env: dict | None = None) -> WorkerProcess:
        worker = start_worker(backend, "--burst", *args, env=env)
        code = worker.wait()
        assert code == 0, f"worker exited with {code}:\n{worker.output()}"
        return worker

    return run


def wait_until(predicate, timeout=60.0, interval=0.05, message="condition"):
    """Poll ``predicate`` until true. The timeout only catches a hang: no
    assertion here depends on how fast the machine is."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        time.sleep(interval)
    return value
