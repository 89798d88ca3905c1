"""The built wheel as a user installs it: run with the Python of a fresh venv
holding only ``pip install dist/*.whl`` (see .ci/run's "package" step).

Checks that no dev tool came along and the package ships py.typed, then
writes a small project to a temporary directory (SQLite, the database
backend, an app with two tasks), migrates it, enqueues from a shell, runs
``runtaskworker --burst`` and reads the results back. Exits non-zero, with
the failing step's output, at the first thing that is not as it should be.
"""

import importlib.util
import subprocess
import sys
import tempfile
from importlib.metadata import version
from importlib.resources import files
from pathlib import Path

DEV_ONLY = ["pytest", "ruff", "mypy", "playwright", "dj_database_url", "twine"]
# Each its extra's, none asked for.
EXTRAS = ["psycopg", "redis", "prometheus_client", "opentelemetry"]

SETTINGS = """
SECRET_KEY = "smoke"
USE_TZ = True
INSTALLED_APPS = ["django_tasks_q", "shop"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "db.sqlite3"}}
TASKS = {
    "default": {
        "BACKEND": "django_tasks_q.backends.database.DatabaseBackend",
        "QUEUES": ["default", "emails"],
    }
}
"""
TASKS = """
from django.tasks import task

import django_tasks_q


@task
def add(a: int, b: int) -> int:
    return a + b


@django_tasks_q.task(queue_name="emails", max_retries=2)
def receipt(order_id: int) -> str:
    return f"receipt for order {order_id}"
"""
MANAGE = """
import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
from django.core.management import execute_from_command_line

execute_from_command_line(sys.argv)
"""
ENQUEUE = """
from shop.tasks import add, receipt
print(add.enqueue(2, 3).id, receipt.enqueue(42).id)
"""
RESULTS = """
import django_tasks_q, sys
from shop.tasks import add, receipt
assert django_tasks_q.__file__.startswith(sys.prefix), django_tasks_q.__file__
for task, result_id in zip([add, receipt], "{ids}".split()):
    result = task.get_result(result_id)
    print(result.status, repr(result.return_value))
try:
    import django_tasks_q.metrics
except ImportError as error:
    print(error)
"""
EXPECTED = [
    "SUCCESSFUL 5",
    "SUCCESSFUL 'receipt for order 42'",
    'django_tasks_q.metrics needs prometheus-client: pip install "django-tasks-q[prometheus]"',
]


def fail(message: str) -> None:
    print(f"smoke test: {message}", file=sys.stderr)
    sys.exit(1)


def manage(project: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0:
        fail(f"manage.py {' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}")
    return done.stdout


def main() -> None:
    present = [name for name in DEV_ONLY + EXTRAS if importlib.util.find_spec(name)]
    if present:
        fail(f"the venv holds {present}: installing the wheel brought more than it needs")
    if not files("django_tasks_q").joinpath("py.typed").is_file():
        fail("the installed package has no py.typed")
    with tempfile.TemporaryDirectory() as directory:
        project = Path(directory)
        (project / "shop").mkdir()
        (project / "shop" / "__init__.py").write_text("")
        (project / "shop" / "tasks.py").write_text(TASKS)
        (project / "settings.py").write_text(SETTINGS)
        (project / "manage.py").write_text(MANAGE)
        manage(project, "migrate", "--verbosity", "0")
        manage(project, "check", "--fail-level", "WARNING")
        ids = manage(project, "shell", "--verbosity", "0", "--command", ENQUEUE).strip()
        manage(project, "runtaskworker", "--burst")
        lines = manage(
            project, "shell", "--verbosity", "0", "--command", RESULTS.format(ids=ids)
        ).splitlines()
    if lines != EXPECTED:
        fail(f"expected {EXPECTED}, got {lines}")
    print(f"django-tasks-q {version('django-tasks-q')} from the wheel: enqueue, worker, results OK")


if __name__ == "__main__":
    main()
