"""A project on psycopg2 (Django supports both drivers): workers cannot LISTEN,
which needs psycopg 3, so ``manage.py check`` warns, and the worker says it polls.

psycopg2 is not installed here, so the script loads Django's PostgreSQL backend
on psycopg 3 and connects (psycopg imports some of its own modules on first
use), and then hides ``psycopg``: ``sys.modules["psycopg"] = None``
makes ``import psycopg`` raise ImportError exactly as when it is not installed.
That is faithful because the package decides on nothing else: whether
``import psycopg`` succeeds, never which driver Django loaded.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

from django.db import connections

ROOT = Path(__file__).resolve().parent.parent

WITHOUT_PSYCOPG3 = """
import sys
import django
django.setup()
from django.core.management import call_command
from django.db import connections
from django_tasks_q.compat import task_backends
# Django's PostgreSQL backend, loaded and connected on the driver there is.
connections["postgres"].ensure_connection()
sys.modules["psycopg"] = None
backend = task_backends["postgres"]
for message in backend.check():
    print(message.id, message.msg, message.hint, sep=" | ")
print("listener:", backend.listen(None, lambda: None))
call_command("runtaskworker", "--backend", "postgres", "--burst")
"""


def run_script(script: str) -> subprocess.CompletedProcess:
    names = {alias: str(connections[alias].settings_dict["NAME"]) for alias in connections}
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "TASKQ_DB_NAMES": json.dumps(names),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_without_psycopg3_the_check_warns_and_the_worker_polls(postgres_queue_db):
    done = run_script(WITHOUT_PSYCOPG3)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[:2] == [
        "django_tasks_q.W002 | TASKS['postgres'] is on PostgreSQL without psycopg 3 "
        "(import psycopg fails): workers cannot be woken by LISTEN/NOTIFY, so they look "
        "for new tasks every poll_interval (0.05 s). | Install psycopg 3: pip install "
        "'django-tasks-q[postgres]' (or [postgres-binary], with its own libpq); Django "
        "supports it too.",
        "listener: None",
    ]
    assert "Traceback" not in done.stderr, done.stderr
    assert "thread pool of 4; polling every 0.05 s" in done.stderr, done.stderr


def test_with_psycopg3_the_worker_says_it_listens(postgres_queue_db):
    script = WITHOUT_PSYCOPG3.replace('sys.modules["psycopg"] = None', "")
    done = run_script(script)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "W002" not in done.stdout
    assert "thread pool of 4; wake-ups: LISTEN connection" in done.stderr, done.stderr


WAIT_WITHOUT_PSYCOPG3 = """
import sys
import django
django.setup()
from django.core.management import call_command
from django.db import connections
connections["postgres"].ensure_connection()
sys.modules["psycopg"] = None
from tests.tasks import echo
result = echo.using(backend="postgres").enqueue("polled")
call_command("runtaskworker", "--backend", "postgres", "--burst")
print(result.wait(timeout=30).status, result.return_value)
"""


def test_without_psycopg3_wait_polls(postgres_queue_db):
    # wait() on PostgreSQL listens for a notification; that needs psycopg 3.
    done = run_script(WAIT_WITHOUT_PSYCOPG3)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == "SUCCESSFUL {'args': ['polled'], 'kwargs': {}}\n"
    assert "Traceback" not in done.stderr, done.stderr
