"""``manage.py taskq``: the subcommands on the SQL tables, for people and
(--json) for scripts. ``status``, ``workers`` and ``purge``, which work on
every backend, are tested with the other backends' figures in
test_queue_figures.py."""

import json
import os
import re
import subprocess
import sys
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from django_tasks_q.models import ResultStatus, Task, TaskResult, TaskStatus

from .conftest import ROOT
from .factories import make_result, make_task

# About the SQL tables: the database backends only.
pytestmark = pytest.mark.database_only


def taskq(backend, *args, as_json=False):
    out = StringIO()
    flags = ["--backend", backend.alias, *(["--json"] if as_json else [])]
    call_command("taskq", *flags, *args, stdout=out)
    return json.loads(out.getvalue()) if as_json else out.getvalue()


def queue(backend):
    return Task.objects.using(backend.database)


def history(backend):
    return TaskResult.objects.using(backend.database)


def test_list_the_queue_and_the_history(queue_db):
    waiting = make_task(queue_db)
    make_task(queue_db, queue_name="emails", status=TaskStatus.RUNNING)
    blocked = make_task(queue_db, queue_name="other", status=TaskStatus.BLOCKED)
    failed = make_result(queue_db, task_path="tests.tasks.echo")
    make_result(queue_db, ResultStatus.SUCCESSFUL)

    text = taskq(queue_db, "list")
    assert str(waiting.pk) in text and "WAITING" in text and "RUNNING" in text
    assert "test-worker" in text and str(failed.pk) not in text

    rows = taskq(queue_db, "list", "--queue", "default", as_json=True)
    assert [r["id"] for r in rows] == [str(waiting.pk)] and rows[0]["status"] == "WAITING"
    assert taskq(queue_db, "list", "--status", "running", as_json=True)[0]["queue_name"] == "emails"
    # Waiting for other tasks (after()), not for a worker.
    rows = taskq(queue_db, "list", "--status", "blocked", as_json=True)
    assert [(r["id"], r["status"]) for r in rows] == [(str(blocked.pk), "BLOCKED")]

    rows = taskq(queue_db, "list", "--status", "failed", as_json=True)
    assert [(r["id"], r["status"]) for r in rows] == [(str(failed.pk), "FAILED")]
    assert rows[0]["finished_at"]
    assert taskq(queue_db, "list", "--status", "failed", "--task", "tests.tasks.add") == "(none)\n"


def test_retry_by_id_queue_or_all(queue_db):
    first = make_result(queue_db)
    emails = make_result(queue_db, queue_name="emails")
    make_result(queue_db, ResultStatus.SUCCESSFUL)

    assert taskq(queue_db, "retry", str(first.pk)) == "Retried 1 task(s).\n"
    assert taskq(queue_db, "retry", "--queue", "emails", as_json=True) == {"retried": 1}
    assert set(queue(queue_db).values_list("pk", flat=True)) == {first.pk, emails.pk}
    assert taskq(queue_db, "retry", "--all", as_json=True) == {"retried": 0}

    with pytest.raises(CommandError, match="Say which tasks"):
        taskq(queue_db, "retry")
    with pytest.raises(CommandError, match="'nope' is not a task id"):
        taskq(queue_db, "retry", "nope")


def test_cancel_leaves_running_tasks(queue_db):
    make_task(queue_db, status=TaskStatus.RUNNING)
    make_task(queue_db)
    make_task(queue_db, task_path="tests.tasks.echo")
    assert taskq(queue_db, "cancel", "--task", "tests.tasks.echo", as_json=True) == {"cancelled": 1}
    assert taskq(queue_db, "cancel", "--all") == "Cancelled 1 waiting task(s).\n"
    assert list(queue(queue_db).values_list("status", flat=True)) == [TaskStatus.RUNNING]
    assert history(queue_db).filter(status=ResultStatus.CANCELLED).count() == 2


def test_prune(queue_db):
    for _ in range(3):
        make_result(queue_db, ResultStatus.SUCCESSFUL, finished_ago=timedelta(days=10))
    make_result(queue_db, finished_ago=timedelta(days=10))
    recent = make_result(queue_db, ResultStatus.SUCCESSFUL)

    args = ["prune", "--older-than", "7", "--status", "successful", "--batch-size", "2"]
    assert taskq(queue_db, *args) == "Deleted 3 result(s) older than 7 day(s).\n"
    assert taskq(queue_db, "prune", "--older-than", "7", as_json=True) == {"pruned": 1}
    assert list(history(queue_db)) == [recent]
    with pytest.raises(CommandError, match="--older-than"):
        taskq(queue_db, "prune", "--older-than", "-1")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["list", "--limit", "-1"], "argument --limit: must be 0 or more, not -1"),
        (["list", "--limit", "x"], "argument --limit: 'x' is not a whole number"),
        (["prune", "--older-than", "nan"], "argument --older-than: must be a number of days, "),
        (["prune", "--older-than=-inf"], "argument --older-than: must be a number of days, "),
        (["prune", "--older-than", "1e9"], "argument --older-than: 1e9 days reaches back before"),
    ],
)
def test_numbers_out_of_range_are_usage_errors(queue_db, args, message):
    with pytest.raises(CommandError, match=re.escape(message)):
        taskq(queue_db, *args)


def test_a_usage_error_is_one_line_on_the_command_line(queue_db):
    command = [sys.executable, "-m", "django", "taskq", "list", "--limit", "-1"]
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1].endswith(
        "error: argument --limit: must be 0 or more, not -1"
    )
    assert "Traceback" not in done.stderr


def test_unknown_backend_is_an_error(queue_db):
    with pytest.raises(CommandError):
        call_command("taskq", "--backend", "nope", "status", stdout=StringIO())


def test_common_options_go_before_or_after_the_subcommand(queue_db):
    waiting = make_task(queue_db)
    after = StringIO()
    call_command("taskq", "list", "--json", "--backend", queue_db.alias, stdout=after)
    before = StringIO()
    call_command("taskq", "--json", "--backend", queue_db.alias, "list", stdout=before)
    assert after.getvalue() == before.getvalue()
    assert [row["id"] for row in json.loads(after.getvalue())] == [str(waiting.pk)]
    # Given before the subcommand, not overridden by its defaults after it.
    nested = StringIO()
    call_command(
        "taskq", "--backend", queue_db.alias, "schedules", "pause", "--all", "--json", stdout=nested
    )
    assert json.loads(nested.getvalue()) == {"paused": 0}


def test_json_is_one_line_unless_indent_is_given(queue_db):
    make_task(queue_db)
    one_line = taskq(queue_db, "status", as_json=True)
    out = StringIO()
    call_command("taskq", "--backend", queue_db.alias, "--json", "status", stdout=out)
    assert out.getvalue().count("\n") == 1  # the line's own end
    indented = StringIO()
    call_command("taskq", "status", "--backend", queue_db.alias, "--indent", "2", stdout=indented)
    assert indented.getvalue().count("\n") > 10

    def waiting(queues):
        return [(queue["queue"], queue["waiting"]) for queue in queues]

    assert waiting(json.loads(indented.getvalue())) == waiting(one_line)
