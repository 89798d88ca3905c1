"""The package as a user without the optional extras installs it."""

from pathlib import Path

from .conftest import ROOT, run_without

WITHOUT_PSYCOPG = """
import os
os.environ["DJANGO_SETTINGS_MODULE"] = "testproject.settings"
os.environ.pop("DATABASE_URL", None)
import django
django.setup()
from django.core.management import call_command
import django_tasks_q.admin, django_tasks_q.backends.database.operations
from django_tasks_q.worker.worker import Worker
call_command("check", "--fail-level", "WARNING")
print("imported without psycopg")
"""


def test_sqlite_needs_no_psycopg():
    done = run_without("psycopg", WITHOUT_PSYCOPG)
    assert done.returncode == 0, done.stderr
    assert "imported without psycopg" in done.stdout


def project(queue: dict, database: Path, *commands: list[str]) -> str:
    """A script: a project whose one queue is ``queue``, running ``commands``."""
    return f"""
from django.conf import settings
settings.configure(
    INSTALLED_APPS=["django_tasks_q"],
    DATABASES={{"default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": {str(database)!r}}}}},
    TASKS={{"default": {queue!r}}},
)
from django.core.management import execute_from_command_line
for command in {list(commands)!r}:
    execute_from_command_line(["manage.py", *command])
"""


DATABASE_QUEUE = {"BACKEND": "django_tasks_q.backends.database.DatabaseBackend"}
REDIS_QUEUE = {
    "BACKEND": "django_tasks_q.backends.redis.RedisBackend",
    "OPTIONS": {"url": "redis://127.0.0.1:1/0"},
}
PROMETHEUS_LINE = (
    'django_tasks_q.metrics needs prometheus-client: pip install "django-tasks-q[prometheus]"'
)


def test_metrics_without_prometheus_client_names_the_extra(tmp_path):
    script = project(DATABASE_QUEUE, tmp_path / "db.sqlite3") + "import django_tasks_q.metrics"
    done = run_without("prometheus_client", script)
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == f"ImportError: {PROMETHEUS_LINE}"


def test_worker_metrics_port_without_prometheus_client_names_the_extra(tmp_path):
    commands = [["migrate", "-v0"], ["runtaskworker", "--metrics-port", "0", "--burst"]]
    done = run_without("prometheus_client", project(DATABASE_QUEUE, tmp_path / "db", *commands))
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == f"CommandError: --metrics-port: {PROMETHEUS_LINE}."


def test_redis_backend_without_redis_names_the_extra(tmp_path):
    done = run_without("redis", project(REDIS_QUEUE, tmp_path / "db.sqlite3", ["check"]))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr, done.stderr
    assert (
        "?: (django_tasks_q.E006) TASKS['default'] uses RedisBackend, which needs the redis "
        "package: pip install 'django-tasks-q[redis]'."
    ) in done.stderr, done.stderr


def test_version_is_pyprojects():
    import tomllib

    import django_tasks_q

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert django_tasks_q.__version__ == pyproject["project"]["version"]
