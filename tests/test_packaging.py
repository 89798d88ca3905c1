"""The package as a user without the optional extras installs it."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

WITHOUT_PSYCOPG = """
import sys
sys.modules["psycopg"] = None  # as if the [postgres] extra were not installed
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
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_PSYCOPG],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "imported without psycopg" in done.stdout
