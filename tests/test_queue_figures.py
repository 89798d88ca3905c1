"""How the queue is doing, read alike from every backend (SQLite, PostgreSQL,
Redis): the figures behind the dashboard, ``taskq status``, ``workers`` and
``purge``, and the Prometheus collector.

The queue is filled through the backend's own API, as application code and a
worker fill it: enqueue, claim, record outcomes, register a worker.
"""

import json
import os
import socket
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from django_tasks_q.backends.contract import Outcome
from django_tasks_q.compat import TASKS_PACKAGE
from django_tasks_q.metrics import QueueCollector
from django_tasks_q.models import ResultStatus

from . import tasks
from .conftest import wait_until

QUEUES = ["default", "emails", "other"]  # the test settings' QUEUES
ERROR = {"exception_class_path": "builtins.ValueError", "traceback": "ValueError: boom\n"}


def fill(backend):
    """default: two waiting (the older one of lower priority, so not first in
    claim order) and one scheduled an hour ahead. emails: three claimed by
    worker w-1, of which one succeeded, one failed and one still runs. other:
    nothing. Returns the older waiting task's result and when the outcomes
    finished."""
    queue = backend.queue_backend
    add = tasks.add.using(backend=backend.alias)
    oldest = add.using(priority=-5).enqueue(1, 1)
    add.using(priority=10).enqueue(2, 2)
    add.using(run_after=timedelta(hours=1)).enqueue(3, 3)
    for n in range(3):
        add.using(queue_name="emails").enqueue(n, n)
    queue.register_worker("w-1", queues=["emails"], concurrency=4, pool="thread")
    _, claimed = queue.record_and_claim([], ["emails"], 3, "w-1")
    finished_at = timezone.now()
    outcomes = [
        Outcome(claimed[0], ResultStatus.SUCCESSFUL, finished_at, 0.01, return_value=0),
        Outcome(claimed[1], ResultStatus.FAILED, finished_at, 0.01, error=ERROR),
    ]
    recorded, _ = queue.record_and_claim(outcomes, None, 0, "w-1")
    assert len(recorded) == 2
    return oldest, finished_at


def by_queue(figures):
    return {queue.queue: queue for queue in figures}


def test_queue_stats(queue_db):
    oldest, finished_at = fill(queue_db)
    backend = queue_db.queue_backend
    now = finished_at + timedelta(seconds=1)

    queues = by_queue(backend.queue_stats(QUEUES, now=now))
    default, emails, other = queues["default"], queues["emails"], queues["other"]
    assert list(queues) == QUEUES
    assert (default.waiting, default.scheduled, default.running) == (2, 1, 0)
    assert default.oldest_waiting_since == oldest.enqueued_at
    assert default.oldest_waiting_seconds == (now - oldest.enqueued_at).total_seconds()
    assert (emails.waiting, emails.scheduled, emails.running) == (0, 0, 1)
    assert (emails.failed_last_hour, emails.finished_last_hour) == (1, 2)
    assert emails.oldest_waiting_since is None
    # One bar per minute, the current one last: both outcomes in their minute.
    minute = finished_at.replace(second=0, microsecond=0)
    assert len(emails.throughput) == 60 and emails.throughput[-1][0] == now.replace(
        second=0, microsecond=0
    )
    assert [bar for bar in emails.throughput if bar[1] or bar[2]] == [(minute, 1, 1)]
    assert (other.waiting, other.running, other.finished_last_hour) == (0, 0, 0)

    # Ninety minutes on: the delayed task is due (on Redis no claim has moved
    # it to the ready set yet: it counts as waiting all the same), the oldest
    # waiting task is still the first one, and the outcomes are out of the hour.
    later = by_queue(backend.queue_stats(QUEUES, now=now + timedelta(minutes=90), buckets=1))
    assert (later["default"].waiting, later["default"].scheduled) == (3, 0)
    assert later["default"].oldest_waiting_since == oldest.enqueued_at
    assert (later["emails"].failed_last_hour, later["emails"].finished_last_hour) == (0, 0)
    assert len(later["emails"].throughput) == 1

    assert backend.finished_counts(finished_at - timedelta(minutes=5), now) == {
        ("emails", "SUCCESSFUL"): 1,
        ("emails", "FAILED"): 1,
    }
    assert backend.finished_counts(now + timedelta(minutes=5), now + timedelta(minutes=5)) == {}


def test_a_cancelled_task_counts_as_finished_not_as_throughput(queue_db):
    result = tasks.add.using(backend=queue_db.alias).enqueue(1, 2)
    assert result.cancel()
    now = timezone.now()
    backend = queue_db.queue_backend
    since = now - timedelta(minutes=5)
    assert backend.finished_counts(since, now) == {("default", "CANCELLED"): 1}
    default = by_queue(backend.queue_stats(QUEUES, now=now))["default"]
    assert (default.waiting, default.failed_last_hour, default.finished_last_hour) == (0, 0, 0)


def test_an_expired_task_counts_as_failed(queue_db):
    result = tasks.echo.using(backend=queue_db.alias, expires_at=3600).enqueue()
    queue_db.set_deadline(result.id, timezone.now() - timedelta(seconds=1))
    backend = queue_db.queue_backend
    assert backend.expire_tasks() == 1
    default = by_queue(backend.queue_stats(QUEUES))["default"]
    assert (default.waiting, default.failed_last_hour, default.finished_last_hour) == (0, 1, 1)


def test_a_task_whose_worker_was_lost_counts_as_failed(queue_db, settings):
    """Out of attempts, recovery fails it: counted like any failure."""
    params = settings.TASKS[queue_db.alias]
    params = {**params, "OPTIONS": {**params["OPTIONS"], "lease": 0.05, "crash_retries": 0}}
    backend = type(queue_db.queue_backend)(queue_db.alias, params)
    tasks.add.using(backend=queue_db.alias, queue_name="emails").enqueue(1, 2)
    assert len(backend.record_and_claim([], None, 1, "lost-worker")[1]) == 1

    wait_until(lambda: backend.recover() == 1, message="the lease to expire")
    emails = by_queue(backend.queue_stats(QUEUES))["emails"]
    assert (emails.running, emails.failed_last_hour, emails.finished_last_hour) == (0, 1, 1)


def test_workers(queue_db):
    fill(queue_db)
    backend = queue_db.queue_backend
    now = timezone.now()

    [worker] = backend.workers(now)
    assert (worker.id, worker.backend, worker.queues, worker.concurrency, worker.pool) == (
        "w-1",
        queue_db.alias,
        ["emails"],
        4,
        "thread",
    )
    assert (worker.hostname, worker.pid) == (socket.gethostname(), os.getpid())
    assert worker.live and worker.last_heartbeat_at <= now
    # Silent for longer than the lease: stale, still listed until recovered.
    [worker] = backend.workers(now + backend.lease + timedelta(seconds=1))
    assert not worker.live


def taskq(alias, *args):
    out = StringIO()
    call_command("taskq", "--backend", alias, "--json", *args, stdout=out)
    return json.loads(out.getvalue())


def test_taskq_status_and_workers(queue_db):
    fill(queue_db)
    queue_db.queue_backend.register_worker("w-2", queues=[], concurrency=1, pool="process")
    queue_db.silence_worker("w-2", timezone.now() - timedelta(hours=1))

    status = {row["queue"]: row for row in taskq(queue_db.alias, "status")}
    assert list(status) == QUEUES
    assert (status["default"]["waiting"], status["default"]["scheduled"]) == (2, 1)
    assert status["default"]["oldest_waiting_seconds"] >= 0
    assert (status["emails"]["running"], status["emails"]["failed_last_hour"]) == (1, 1)
    assert status["emails"]["finished_last_hour"] == 2 and len(status["emails"]["throughput"]) == 60

    out = StringIO()
    call_command("taskq", "--backend", queue_db.alias, "status", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0].split() == [
        "QUEUE", "WAITING", "SCHEDULED", "RUNNING", "BLOCKED",
        "FAILED", "1H", "OLDEST", "DONE", "1H",
    ]  # fmt: skip
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert rows["default"][1:5] == ["2", "1", "0", "0"] and rows["default"][6].endswith(("s", "m"))
    assert rows["emails"][1:8] == ["0", "0", "1", "0", "1", "-", "2"]
    assert rows["other"][1:8] == ["0", "0", "0", "0", "0", "-", "0"]

    assert [(w["id"], w["live"]) for w in taskq(queue_db.alias, "workers")] == [("w-1", True)]
    every = taskq(queue_db.alias, "workers", "--all")
    assert {(w["id"], w["live"], w["pool"]) for w in every} == {
        ("w-1", True, "thread"),
        ("w-2", False, "process"),
    }


def test_taskq_purge_deletes_waiting_tasks_only(queue_db, monkeypatch):
    fill(queue_db)
    # Asks first; with no terminal to ask on, it refuses.
    monkeypatch.setattr("sys.stdin", StringIO())
    with pytest.raises(CommandError, match="--no-input"):
        taskq(queue_db.alias, "purge", "default")

    assert taskq(queue_db.alias, "purge", "default", "--no-input") == {
        "purged": 3,
        "queue": "default",
    }
    assert taskq(queue_db.alias, "purge", "emails", "--no-input") == {
        "purged": 0,
        "queue": "emails",
    }
    # The running task is left to finish.
    assert [(t["queue_name"], t["status"]) for t in queue_db.queued()] == [("emails", "RUNNING")]


def test_a_purged_task_leaves_nothing_to_expire(queue_db):
    result = tasks.echo.using(backend=queue_db.alias, expires_at=3600).enqueue()
    queue_db.set_deadline(result.id, timezone.now() - timedelta(seconds=1))
    assert queue_db.queue_backend.purge("default") == 1
    assert queue_db.queue_backend.expire_tasks() == 0


def test_taskq_purge_works_in_batches(redis_queue_db, monkeypatch):
    monkeypatch.setattr("django_tasks_q.backends.redis.backend.PURGE_BATCH", 2)
    emails = tasks.add.using(backend="redis", queue_name="emails")
    for n in range(5):
        emails.using(run_after=timedelta(hours=n % 2)).enqueue(n, n)  # 3 ready, 2 scheduled
    assert taskq("redis", "purge", "emails", "--no-input")["purged"] == 5
    assert redis_queue_db.queued_count() == 0


def test_taskq_says_which_subcommands_a_redis_backend_has(redis_queue_db):
    """The others act on the SQL tables, which do not hold a Redis queue."""
    with pytest.raises(CommandError, match=r"taskq list works on the database backend's tables"):
        taskq("redis", "list")
    with pytest.raises(CommandError, match=r"taskq status, workers, purge, health work with it"):
        taskq("redis", "prune", "--older-than", "1")


def test_dashboard_has_a_section_per_backend(queue_db, superuser):
    oldest, _ = fill(queue_db)

    response = superuser.get(reverse("admin:django_tasks_q_dashboard_changelist"))
    sections = {section["alias"]: section for section in response.context["backends"]}
    assert "default" in sections  # every django-tasks-q backend has one
    section = sections[queue_db.alias]
    queues = by_queue(section["queues"])
    assert (queues["default"].waiting, queues["default"].scheduled) == (2, 1)
    assert queues["default"].oldest_waiting_since == oldest.enqueued_at
    assert (queues["emails"].running, queues["emails"].failed_last_hour) == (1, 1)
    assert queues["emails"].finished_last_hour == 2
    assert [w.id for w in section["live_workers"]] == ["w-1"]
    # The numbers link to the lists only where the lists show that queue: the
    # admin's lists show the default backend's tables.
    assert section["linked"] is (queue_db.alias == "default")

    page = response.content.decode()
    start = page.index(f'data-backend="{queue_db.alias}"')
    html = page[start : page.index("</section>", start)]
    assert 'data-queue="emails"' in html and 'data-worker="w-1"' in html
    assert "1 ok, 1 failed" in html
    assert ("?queue_name=emails&amp;state=running" in html) is section["linked"]


def scrape(*aliases):
    registry = CollectorRegistry()
    registry.register(QueueCollector(*aliases))
    samples = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def test_metrics(queue_db):
    fill(queue_db)
    samples = scrape(queue_db.alias)

    def value(name, **labels):
        return samples.get((name, tuple(sorted({"backend": queue_db.alias, **labels}.items()))))

    assert value("taskq_backend_up") == 1
    assert value("taskq_tasks", queue="default", state="waiting") == 2
    assert value("taskq_tasks", queue="default", state="scheduled") == 1
    assert value("taskq_tasks", queue="emails", state="running") == 1
    assert value("taskq_tasks", queue="other", state="waiting") == 0
    assert value("taskq_oldest_waiting_seconds", queue="default") >= 0
    assert value("taskq_finished_tasks", queue="emails", status="SUCCESSFUL") == 1
    assert value("taskq_finished_tasks", queue="emails", status="FAILED") == 1
    assert value("taskq_workers", state="live") == 1 and value("taskq_worker_slots") == 4
    # Run times come from the database's history; Redis keeps none.
    ran = value("taskq_task_duration_seconds_gcount", queue="emails")
    assert ran == (None if queue_db.vendor == "redis" else 2)


@pytest.mark.django_db(databases="__all__")
def test_what_is_not_a_queue_backend_is_left_out(settings, superuser):
    settings.TASKS = {
        **settings.TASKS,
        "dummy": {"BACKEND": f"{TASKS_PACKAGE}.backends.dummy.DummyBackend"},
    }
    response = superuser.get(reverse("admin:django_tasks_q_dashboard_changelist"))
    assert "dummy" not in {section["alias"] for section in response.context["backends"]}
    assert ("backend", "dummy") not in {pair for _, labels in scrape() for pair in labels}
    with pytest.raises(CommandError, match="DummyBackend, not a django-tasks-q backend"):
        taskq("dummy", "status")


def test_a_backend_that_does_not_answer(redis_queue_db, settings, superuser):
    """Its section and its metrics say so; the other backends' still show."""
    settings.TASKS = {
        **settings.TASKS,
        "down": {
            "BACKEND": "django_tasks_q.backends.redis.RedisBackend",
            "OPTIONS": {"url": "redis://127.0.0.1:1/0"},  # nothing listens there
        },
    }
    fill(redis_queue_db)

    response = superuser.get(reverse("admin:django_tasks_q_dashboard_changelist"))
    sections = {section["alias"]: section for section in response.context["backends"]}
    assert "Connection refused" in sections["down"]["error"]
    assert by_queue(sections["redis"]["queues"])["default"].waiting == 2
    assert "Its store did not answer: ConnectionError" in response.content.decode()

    samples = scrape()  # every backend
    assert samples["taskq_backend_up", (("backend", "down"),)] == 0
    assert samples["taskq_backend_up", (("backend", "redis"),)] == 1
    down = [name for name, labels in samples if ("backend", "down") in labels]
    assert down == ["taskq_backend_up"]

    with pytest.raises(CommandError, match=r"TASKS\['down'\]: ConnectionError"):
        taskq("down", "status")
