"""``taskq health``, the probe, with each of its exit codes; and a default
shutdown timeout that fits in Kubernetes' grace period."""

import json
import os
import subprocess
import sys
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connections
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder
from django.utils import timezone

from django_tasks_q.management.commands.runtaskworker import Command as RunTaskWorker

from .conftest import ROOT, wait_until


def health(alias, *args):
    """The probe's exit code and its line."""
    out = StringIO()
    try:
        call_command("taskq", "--backend", alias, "health", *args, stdout=out)
    except CommandError as error:
        return error.returncode, str(error)
    return 0, out.getvalue()


def test_healthy_when_every_queue_has_a_live_worker(queue_db):
    backend = queue_db.queue_backend
    backend.register_worker("all-queues", queues=[], concurrency=1, pool="thread")
    assert health(queue_db.alias) == (0, "A live worker serves each of default, emails, other.\n")
    backend.register_worker("emails-only", queues=["emails"], concurrency=1, pool="thread")
    queue_db.silence_worker("all-queues", timezone.now() - backend.lease - timedelta(seconds=1))
    assert health(queue_db.alias, "--queue", "emails")[0] == 0


def test_exit_2_when_a_queue_has_no_live_worker(queue_db):
    backend = queue_db.queue_backend
    assert health(queue_db.alias) == (
        2,
        f"No live worker serves queue(s) default, emails, other of TASKS[{queue_db.alias!r}].",
    )
    backend.register_worker("emails-only", queues=["emails"], concurrency=1, pool="thread")
    assert health(queue_db.alias)[1].startswith("No live worker serves queue(s) default, other ")
    assert health(queue_db.alias, "--queue", "emails")[0] == 0


def test_exit_3_when_the_named_worker_is_not_live(queue_db):
    backend = queue_db.queue_backend
    assert health(queue_db.alias, "--worker", "pod-1") == (
        3,
        f"Worker 'pod-1' has sent no heartbeat in the last "
        f"{backend.lease.total_seconds():g} s (the lease).",
    )
    backend.register_worker("pod-1", queues=["emails"], concurrency=1, pool="thread")
    # Its liveness only: the other queues' lack of workers is not this pod's fault.
    assert health(queue_db.alias, "--worker", "pod-1") == (0, "Worker 'pod-1' is live.\n")
    queue_db.silence_worker("pod-1", timezone.now() - backend.lease - timedelta(seconds=1))
    assert health(queue_db.alias, "--worker", "pod-1")[0] == 3


def test_exit_1_when_the_store_does_not_answer(settings):
    settings.TASKS = {
        **settings.TASKS,
        "down": {
            "BACKEND": "django_tasks_q.backends.redis.RedisBackend",
            "OPTIONS": {"url": "redis://127.0.0.1:1/0"},  # nothing listens there
        },
    }
    code, message = health("down")
    assert code == 1 and message.startswith("TASKS['down']: ConnectionError")


@pytest.mark.database_only
def test_exit_1_when_the_tables_are_not_migrated(queue_db):
    connection = connections[queue_db.database]
    # The newest migration: an older one left out behind it is not in the plan.
    [(_, newest)] = MigrationLoader(connection).graph.leaf_nodes("django_tasks_q")
    recorder = MigrationRecorder(connection)
    recorder.record_unapplied("django_tasks_q", newest)
    try:
        assert health(queue_db.alias) == (
            1,
            f"TASKS[{queue_db.alias!r}]: the database {queue_db.database!r} lacks the "
            f"django_tasks_q migration {newest}: run `manage.py migrate`.",
        )
    finally:
        recorder.record_applied("django_tasks_q", newest)


@pytest.mark.database_only
def test_a_real_worker_makes_the_probe_pass_and_the_shell_sees_the_codes(queue_db, start_worker):
    """From a shell (Kubernetes' exec probe): exit 2, then 0 once a worker runs."""
    names = {alias: str(connections[alias].settings_dict["NAME"]) for alias in connections}
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    env["TASKQ_DB_NAMES"] = json.dumps(names)  # the test databases, as the worker's
    probe = [sys.executable, "-m", "django", "taskq", "--backend", queue_db.alias, "health"]
    worker = start_worker(queue_db, "--worker-id", "pod-1")
    wait_until(lambda: health(queue_db.alias)[0] == 0, message="a live worker")
    assert health(queue_db.alias, "--worker", "pod-1")[0] == 0
    worker.signal()
    assert worker.wait() == 0
    # A worker that stops leaves the registry: no live worker.
    assert health(queue_db.alias)[0] == 2
    down = subprocess.run(probe, cwd=ROOT, env=env, capture_output=True, text=True)
    assert (down.returncode, down.stderr.count("\n")) == (2, 1), down.stderr


def test_the_default_shutdown_timeout_fits_in_a_30_s_grace_period():
    options = RunTaskWorker().create_parser("manage.py", "runtaskworker").parse_args([])
    assert options.shutdown_timeout == 25
