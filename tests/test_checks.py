"""System checks: every mistake in the configuration is one clear line from
``manage.py check``, never a traceback."""

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from django_tasks_q.backends.database import DatabaseBackend
from django_tasks_q.backends.redis import RedisBackend

ROOT = Path(__file__).resolve().parent.parent


def check_output(settings_module: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "django", "check"],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": settings_module},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.smoke
def test_a_project_without_the_app_installed_gets_e001():
    done = check_output("tests.projects.without_app")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    for alias, backend in [("default", "DatabaseBackend"), ("fast", "RedisBackend")]:
        assert (
            f"(django_tasks_q.E001) TASKS[{alias!r}] uses {backend}, but 'django_tasks_q' "
            "is not in INSTALLED_APPS." in done.stderr
        ), done.stderr
    assert "HINT: Add 'django_tasks_q' to INSTALLED_APPS" in done.stderr


def ids(backend) -> list[str]:
    return [message.id for message in backend.check()]


def test_every_option_has_one_type_on_every_backend():
    for backend_class in (DatabaseBackend, RedisBackend):
        backend = backend_class("b", {"OPTIONS": {"result_ttl": 90, "lease": timedelta(seconds=5)}})
        assert backend.result_ttl == timedelta(seconds=90)
        assert backend.lease == timedelta(seconds=5)
        assert backend_class("b", {"OPTIONS": {"result_ttl": None}}).result_ttl is None


def test_a_bad_value_is_an_error_naming_the_option_and_what_it_takes():
    backend = DatabaseBackend("b", {"OPTIONS": {"poll_interval": "fast", "synchronous_commit": 0}})
    assert backend.poll_interval == 1.0  # the default, until the mistake is fixed
    messages = {message.id: message.msg for message in backend.check()}
    assert messages == {
        "django_tasks_q.E005": "TASKS['b']['OPTIONS']['poll_interval'] must be a positive "
        "number of seconds, not 'fast'.",
        "django_tasks_q.E009": "TASKS['b']['OPTIONS']['synchronous_commit'] must be True or "
        "False, not 0.",
    }


def test_an_unknown_option_is_a_warning_with_the_likeliest_meant():
    backend = DatabaseBackend("b", {"OPTIONS": {"poll_intervall": 5, "result_tll": 60}})
    warnings = [(m.id, m.msg, m.hint) for m in backend.check()]
    assert warnings == [
        (
            "django_tasks_q.W001",
            "TASKS['b']['OPTIONS'] has an unknown option 'poll_intervall'; it is ignored.",
            "Did you mean 'poll_interval'?",
        ),
        (
            "django_tasks_q.W001",
            "TASKS['b']['OPTIONS'] has an unknown option 'result_tll'; it is ignored.",
            "Did you mean 'result_ttl'?",
        ),
    ]


def test_database_must_name_a_database():
    assert ids(DatabaseBackend("b", {"OPTIONS": {"database": "missing"}})) == [
        "django_tasks_q.E002"
    ]


ENQUEUE_WITHOUT_APP = """
import django
django.setup()
from django.core.exceptions import ImproperlyConfigured
from tests.projects.shop.tasks import send_receipt
try:
    send_receipt.enqueue(1)
except ImproperlyConfigured as error:
    print(error)
"""


def test_enqueueing_without_the_app_installed_says_what_to_do():
    done = subprocess.run(
        [sys.executable, "-c", ENQUEUE_WITHOUT_APP],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.projects.without_app"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout == (
        "TASKS['default'] uses DatabaseBackend, but 'django_tasks_q' is not in "
        "INSTALLED_APPS. Add 'django_tasks_q' to INSTALLED_APPS and run manage.py migrate.\n"
    ), done.stderr
