"""``manage.py taskq``: its subcommands, for people and (--json) for scripts."""

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from django_tasks_q.models import ResultStatus, Task, TaskResult, TaskStatus

from .factories import make_result, make_task, make_worker

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


def test_status(queue_db):
    make_task(queue_db)
    make_task(queue_db, run_in=timedelta(hours=1))
    make_task(queue_db, queue_name="emails", status=TaskStatus.RUNNING)
    make_result(queue_db, queue_name="emails")

    lines = taskq(queue_db, "status").splitlines()
    assert lines[0].split() == [
        "QUEUE", "WAITING", "SCHEDULED", "RUNNING", "FAILED", "1H", "OLDEST", "DONE", "1H"
    ]  # fmt: skip
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert rows["default"][1:4] == ["1", "1", "0"]
    assert rows["default"][5].endswith(("s", "m")) and rows["emails"][5] == "-"
    assert rows["emails"][1:5] == ["0", "0", "1", "1"] and rows["emails"][6] == "1"
    assert rows["other"][1:5] == ["0", "0", "0", "0"]

    data = {q["queue"]: q for q in taskq(queue_db, "status", as_json=True)}
    assert (data["default"]["waiting"], data["default"]["scheduled"]) == (1, 1)
    assert data["emails"]["failed_last_hour"] == 1 and data["emails"]["finished_last_hour"] == 1
    assert len(data["emails"]["throughput"]) == 60


def test_list_the_queue_and_the_history(queue_db):
    waiting = make_task(queue_db)
    make_task(queue_db, queue_name="emails", status=TaskStatus.RUNNING)
    failed = make_result(queue_db, task_path="tests.tasks.echo")
    make_result(queue_db, ResultStatus.SUCCESSFUL)

    text = taskq(queue_db, "list")
    assert str(waiting.pk) in text and "WAITING" in text and "RUNNING" in text
    assert "test-worker" in text and str(failed.pk) not in text

    rows = taskq(queue_db, "list", "--queue", "default", as_json=True)
    assert [r["id"] for r in rows] == [str(waiting.pk)] and rows[0]["status"] == "WAITING"
    assert taskq(queue_db, "list", "--status", "running", as_json=True)[0]["queue_name"] == "emails"

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


def test_purge(queue_db, monkeypatch):
    make_task(queue_db, queue_name="emails")
    make_task(queue_db, queue_name="emails", status=TaskStatus.RUNNING)
    make_task(queue_db)

    # Asks first; with no terminal to ask on, it refuses.
    monkeypatch.setattr("sys.stdin", StringIO())
    with pytest.raises(CommandError, match="--no-input"):
        taskq(queue_db, "purge", "emails")
    assert queue(queue_db).count() == 3

    assert taskq(queue_db, "purge", "emails", "--no-input", as_json=True) == {
        "purged": 1,
        "queue": "emails",
    }
    assert sorted(queue(queue_db).values_list("queue_name", "status")) == [
        ("default", TaskStatus.READY),
        ("emails", TaskStatus.RUNNING),
    ]


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


def test_workers(queue_db):
    make_worker(queue_db, "live-one", queues=[])
    make_worker(queue_db, "stale-one", heartbeat_ago=timedelta(hours=2))

    text = taskq(queue_db, "workers")
    assert "live-one" in text and "(all)" in text and "stale-one" not in text
    rows = taskq(queue_db, "workers", "--all", as_json=True)
    assert {(r["id"], r["live"]) for r in rows} == {("live-one", True), ("stale-one", False)}


def test_unknown_backend_is_an_error(queue_db):
    with pytest.raises(CommandError):
        call_command("taskq", "--backend", "nope", "status", stdout=StringIO())
