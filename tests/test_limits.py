"""Concurrency and rate limits: declared on tasks and queues, enforced by the claim."""

import json
import signal
from io import StringIO

import pytest
from django.core import checks
from django.core.management import call_command
from django.test import override_settings
from django.urls import reverse

from django_tasks_q import task
from django_tasks_q.compat import InvalidTask, task_backends
from django_tasks_q.models import Task

from . import tasks
from .conftest import wait_until
from .factories import claim, enqueue

# Tests marked database_only read the Task table; the others run on every store.
database_only = pytest.mark.database_only


# -- declaring limits -------------------------------------------------------------


def limited(**options):
    return task(tasks.sync_customer, **options)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"concurrency": 0}, "concurrency must be a whole number of at least 1, not 0."),
        ({"concurrency": True}, "concurrency must be a whole number of at least 1, not True."),
        ({"rate_limit": "ten per second"}, 'a rate limit is "N/s", "N/m" or "N/h"'),
        ({"rate_limit": "0/s"}, 'a rate limit is "N/s", "N/m" or "N/h"'),
        ({"concurrency": 1, "limit_key": "customer"}, "limit_key 'customer' names no parameter"),
        ({"limit_key": "customer_id"}, "limit_key needs a concurrency or a rate_limit"),
        ({"concurrency": 1, "limit_key": 3}, "limit_key must be a parameter's name or a function"),
    ],
)
def test_bad_limits_are_refused_when_declared(options, message):
    with pytest.raises(InvalidTask) as error:
        limited(**options)
    assert message in str(error.value)


def test_a_limit_key_function_that_raises_is_refused_at_enqueue(queue_db):
    def key(customer_id, full=False):
        raise KeyError("no customer")  # the caller's mistake, told at enqueue

    sync = limited(concurrency=1, limit_key=key)
    with pytest.raises(InvalidTask, match="The limit_key function of .* raised KeyError"):
        enqueue(queue_db, sync, 7)
    assert queue_db.queued_count() == 0


def test_using_limit_key_needs_a_limited_task():
    with pytest.raises(InvalidTask, match="has no concurrency or rate_limit"):
        limited().using(limit_key="acme")


@database_only
@pytest.mark.parametrize(
    ("limit_key", "call", "expected"),
    [
        (None, ((7,), {}), ""),
        ("customer_id", ((7,), {}), ":7"),
        ("customer_id", ((), {"customer_id": "acme"}), ":acme"),
        (lambda customer_id, full=False: f"c{customer_id}-{full}", ((7, True), {}), ":c7-True"),
    ],
)
def test_each_call_counts_in_its_group(queue_db, limit_key, call, expected):
    sync = limited(concurrency=2, rate_limit="10/m", limit_key=limit_key)
    args, kwargs = call
    result = enqueue(queue_db, sync, *args, **kwargs)
    row = Task.objects.using(queue_db.database).get(id=result.id)
    assert row.limit_key == f"{sync.module_path}{expected}"
    assert (row.concurrency_limit, row.rate_limit, row.rate_period) == (2, 10, 60)


@database_only
def test_using_limit_key_overrides_the_key(queue_db):
    sync = limited(concurrency=1, limit_key="customer_id")
    result = sync.using(backend=queue_db.alias, limit_key="acme").enqueue(7)
    row = Task.objects.using(queue_db.database).get(id=result.id)
    assert row.limit_key == f"{sync.module_path}:acme"


@database_only
def test_unlimited_tasks_carry_no_limits(queue_db):
    result = enqueue(queue_db, tasks.echo, 1)
    row = Task.objects.using(queue_db.database).get(id=result.id)
    assert (row.limit_key, row.concurrency_limit, row.rate_limit) == (None, None, None)


@pytest.mark.parametrize(
    "value",
    [
        {"emails": {"concurrency": 0}},
        {"emails": {"rate_limit": "fast"}},
        {"emails": {"concurency": 5}},
        {"emails": {}},
        ["emails"],
    ],
)
def test_bad_queue_limits_are_reported_by_the_checks(value):
    config = {"BACKEND": "django_tasks_q.backends.database.DatabaseBackend"}
    with override_settings(TASKS={"default": {**config, "OPTIONS": {"queue_limits": value}}}):
        messages = task_backends["default"].check()
    [error] = [m for m in messages if m.level == checks.ERROR]
    assert "TASKS['default']['OPTIONS']['queue_limits'] must be a dict of queue names" in error.msg


# -- the claim, in this process -----------------------------------------------------


def finish(backend, claimed):
    """Record the claimed tasks as done, as their worker would."""
    from django.utils import timezone

    from django_tasks_q.backends.contract import Outcome

    outcomes = [
        Outcome(claimed=c, status="SUCCESSFUL", finished_at=timezone.now(), duration=0)
        for c in claimed
    ]
    task_backends[backend.alias].record_and_claim(outcomes, None, 0, "test-worker")


def test_a_claim_takes_no_more_than_the_limit_allows(queue_db, tmp_path):
    for _ in range(5):
        enqueue(queue_db, tasks.two_at_a_time, str(tmp_path / "log"), 0)
    free = [enqueue(queue_db, tasks.echo, n) for n in range(3)]

    first = claim(queue_db, limit=10)
    # Two of the limited tasks, and every unlimited one.
    assert len([c for c in first if c.task_path.endswith("two_at_a_time")]) == 2
    assert {c.id for c in first} >= {r.id for r in free}
    assert claim(queue_db, limit=10) == []  # both slots are taken

    finish(queue_db, [c for c in first if c.task_path.endswith("two_at_a_time")][:1])
    again = claim(queue_db, limit=10)
    assert [c.task_path for c in again] == [tasks.two_at_a_time.module_path]


@database_only
def test_a_key_at_its_limit_holds_back_only_its_own_tasks(queue_db, tmp_path):
    log = str(tmp_path / "log")
    for customer in ["acme", "acme", "acme", "globex", "initech"]:
        enqueue(queue_db, tasks.one_per_customer, log, 0, customer)

    claimed = claim(queue_db, limit=10)
    assert sorted(c.kwargs.get("customer") or c.args[2] for c in claimed) == [
        "acme",
        "globex",
        "initech",
    ]
    # Held back: still READY, no attempt counted.
    waiting = Task.objects.using(queue_db.database).filter(status="READY")
    assert [(t.attempts, t.limit_key.rpartition(":")[2]) for t in waiting] == [
        (0, "acme"),
        (0, "acme"),
    ]


# Per hour: the window cannot pass while a slow machine runs the test.
FIVE_AN_HOUR = {"rate_limit": "5/h"}


def test_a_rate_limit_counts_starts_not_running_tasks(queue_db):
    hourly = limited(**FIVE_AN_HOUR)
    for n in range(8):
        enqueue(queue_db, hourly, n)
    first = claim(queue_db, limit=10)
    assert len(first) == 5
    finish(queue_db, first)
    assert claim(queue_db, limit=10) == []  # finished, but started within the hour


@database_only
def test_queue_limits_hold_back_the_queue(queue_db, tmp_path):
    from django_tasks_q.limits import queue_limits

    log = str(tmp_path / "log")
    for _ in range(4):
        enqueue(queue_db, tasks.span.using(queue_name="other"), log, 0)
    other = [enqueue(queue_db, tasks.span, log, 0) for _ in range(2)]
    backend = task_backends[queue_db.alias]
    configured, backend.queue_limits = (
        backend.queue_limits,
        queue_limits({"other": {"concurrency": 3}}),
    )
    try:
        # A worker names its queues, or serves every queue: the same either way.
        _, claimed = backend.record_and_claim([], ["default", "other"], 10, "named")
        assert len([c for c in claimed if c.queue_name == "other"]) == 3
        assert {c.id for c in claimed} >= {r.id for r in other}
        assert claim(queue_db, limit=10) == []
    finally:
        backend.queue_limits = configured


@pytest.fixture
def other_limited(queue_db):
    """The backend, with a concurrency limit on the queue "other"."""
    from django_tasks_q.limits import queue_limits

    backend = task_backends[queue_db.alias]
    configured, backend.queue_limits = (
        backend.queue_limits,
        queue_limits({"other": {"concurrency": 1}}),
    )
    yield backend
    backend.queue_limits = configured


def claim_statements(backend, limit):
    """The tasks one claim of ``limit`` takes, and the statements it ran."""
    from django.db import connections
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connections[backend.database]) as queries:
        _, claimed = backend.record_and_claim([], ["default", "other"], limit, "busy")
    return claimed, len(queries)


@database_only
def test_a_limit_configured_but_unused_costs_a_busy_claim_no_statement(other_limited):
    for n in range(10):
        enqueue(other_limited, tasks.echo, n)
    claim_statements(other_limited, 2)  # the first claim may look for limited tasks
    limits_configured = claim_statements(other_limited, 2)
    configured, other_limited.queue_limits = other_limited.queue_limits, {}
    try:
        no_limits = claim_statements(other_limited, 2)
    finally:
        other_limited.queue_limits = configured
    assert [len(limits_configured[0]), len(no_limits[0])] == [2, 2]
    assert limits_configured[1] == no_limits[1] == 1  # the claim alone


@database_only
def test_a_limited_task_due_while_the_worker_is_busy_goes_first_next_claim(other_limited):
    for n in range(10):
        enqueue(other_limited, tasks.echo, n)
    claim_statements(other_limited, 2)
    limited_task = enqueue(other_limited, tasks.echo.using(queue_name="other"), "limited")
    busy, _ = claim_statements(other_limited, 2)  # full of unlimited tasks: it sees one due
    assert limited_task.id not in {c.id for c in busy}
    after, _ = claim_statements(other_limited, 2)
    assert [c.id for c in after][:1] == [limited_task.id]


@database_only
def test_an_idle_worker_claims_a_limited_task_at_once(other_limited):
    claim_statements(other_limited, 2)  # nothing due: the next claim looks after its own
    limited_task = enqueue(other_limited, tasks.echo.using(queue_name="other"), "limited")
    claimed, _ = claim_statements(other_limited, 2)
    assert [c.id for c in claimed] == [limited_task.id]


# -- three real workers ----------------------------------------------------------------
# The tasks log their own start and end times (tests/tasks.py); the checks read
# those, not the queue's bookkeeping.

THREE = 3
SHORT_LEASE = {"TASKQ_TEST_LEASE": "3"}  # renewed every 0.75 s
HANG = 600  # seconds: only a hang takes this long, even on a loaded machine


def start_three(backend, start_worker, env=None):
    """Three workers, once all three are up (a signal before then would kill one)."""
    workers = [start_worker(backend, "--concurrency", "4", env=env) for _ in range(THREE)]
    for worker in workers:
        wait_until(
            lambda w=worker: " started: backend " in w.output(), timeout=HANG, message="a worker up"
        )
    return workers


def stop(workers):
    for worker in workers:
        worker.signal()
    for worker in workers:
        assert worker.wait() == 0, worker.output()


def runs(log, n):
    """The ``n`` runs logged in ``log``, once there are that many."""

    def logged():
        lines = log.read_text().splitlines() if log.exists() else []
        return len(lines) >= n and [json.loads(line) for line in lines]

    return wait_until(logged, timeout=HANG, message=f"{n} runs logged")


def most_at_once(runs):
    """The largest number of ``runs`` running at the same moment."""
    # At a tie an end comes before a start: one ended as the other began.
    events = sorted([(r["start"], 1) for r in runs] + [(r["end"], -1) for r in runs])
    running = peak = 0
    for _, change in events:
        running += change
        peak = max(peak, running)
    return peak


def test_never_more_than_the_task_s_concurrency_run(queue_db, start_worker, tmp_path):
    log = tmp_path / "log"
    for _ in range(16):
        enqueue(queue_db, tasks.two_at_a_time, str(log), 0.1)
    workers = start_three(queue_db, start_worker)
    logged = runs(log, 16)
    stop(workers)
    assert most_at_once(logged) <= 2
    assert queue_db.finished_count() == 16


def test_never_more_than_one_per_key_runs(queue_db, start_worker, tmp_path):
    log = tmp_path / "log"
    customers = ["acme", "globex", "initech"]
    for _ in range(6):
        for customer in customers:
            enqueue(queue_db, tasks.one_per_customer, str(log), 0.05, customer)
    workers = start_three(queue_db, start_worker)
    logged = runs(log, 18)
    stop(workers)
    for customer in customers:
        assert most_at_once([r for r in logged if r["customer"] == customer]) <= 1


def test_never_more_than_the_queue_s_concurrency_run(queue_db, start_worker, tmp_path):
    log = tmp_path / "log"
    for _ in range(12):
        enqueue(queue_db, tasks.span.using(queue_name="other"), str(log), 0.1)
    limits = {"TASKQ_TEST_QUEUE_LIMITS": json.dumps({"other": {"concurrency": 2}})}
    workers = start_three(queue_db, start_worker, env=limits)
    logged = runs(log, 12)
    stop(workers)
    assert most_at_once(logged) <= 2


def test_a_rate_limit_holds_over_ten_seconds(queue_db, start_worker, tmp_path):
    log = tmp_path / "log"
    enqueue_many = tasks.five_per_second.using(backend=queue_db.alias).enqueue_many
    enqueue_many([(str(log),)] * 50)  # 5/s: ten seconds of work
    workers = start_three(queue_db, start_worker)
    logged = runs(log, 50)
    stop(workers)
    # The limit is on starts: the times the attempts were claimed, which each
    # task read from its context. In every second from one of them, at most 5.
    claimed = sorted(r["claimed"] for r in logged)
    for first in claimed:
        assert len([c for c in claimed if first <= c < first + 1]) <= 5
    assert claimed[-1] - claimed[0] >= 9  # 50 starts at 5 a second: ten windows


def lease_expiry(backend, task_id):
    """When the claim of the running task ``task_id`` runs out unless renewed (Unix time)."""
    if backend.vendor == "redis":
        key = backend.queue_backend.key("task", task_id)
        return int(backend.client.hget(key, "lease_until")) / 1e6
    task = Task.objects.using(backend.database).get(id=task_id, status="RUNNING")
    return task.lease_expires_at.timestamp()


def test_a_slot_held_by_a_killed_worker_frees_after_its_lease(queue_db, start_worker, tmp_path):
    log, release = tmp_path / "log", tmp_path / "release"
    first = enqueue(queue_db, tasks.one_at_a_time_until, str(log), str(release))
    second = enqueue(queue_db, tasks.one_at_a_time_until, str(log), str(release))
    doomed = start_worker(queue_db, "--worker-id", "doomed", env=SHORT_LEASE)
    wait_until(lambda: log.exists(), timeout=HANG, message="the first task to start")
    doomed.signal(signal.SIGKILL)
    doomed.wait()
    lease_expired_at = lease_expiry(queue_db, first.id)
    assert task_backends[queue_db.alias].get_result(second.id).attempts == 0

    release.touch()
    workers = start_three(queue_db, start_worker, env=SHORT_LEASE)
    wait_until(lambda: queue_db.finished_count() == 2, timeout=HANG, message="both tasks to finish")
    stop(workers)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    spans = [line for line in lines if "end" in line]
    # The second task started only once the dead worker's lease had run out.
    [second_run] = [s for s in spans if s["id"] == second.id]
    assert second_run["claimed"] >= lease_expired_at
    assert (
        most_at_once(
            [s for s in spans if s["id"] == second.id]
            + [{"start": s["start"], "end": s["end"]} for s in spans if s["id"] == first.id]
        )
        <= 1
    )


# -- what operators see -----------------------------------------------------------------


TASKS_URL = reverse("admin:django_tasks_q_task_changelist")


def taskq_list(backend):
    out = StringIO()
    call_command("taskq", "list", "--json", "--backend", backend.alias, stdout=out)
    return {row["id"]: row["status"] for row in json.loads(out.getvalue())}


@database_only
def test_held_back_tasks_say_why(queue_db, tmp_path, superuser):
    log = str(tmp_path / "log")
    running = enqueue(queue_db, tasks.two_at_a_time, log, 0)
    enqueue(queue_db, tasks.two_at_a_time, log, 0)
    held = enqueue(queue_db, tasks.two_at_a_time, log, 0)
    hourly = limited(**FIVE_AN_HOUR)
    rated = [enqueue(queue_db, hourly, n) for n in range(6)]
    free = enqueue(queue_db, tasks.echo, 1)
    assert taskq_list(queue_db)[held.id] == "WAITING"  # nothing runs yet: it could start
    claimed = {c.id for c in claim(queue_db, limit=20)}
    assert running.id in claimed and held.id not in claimed and free.id in claimed

    statuses = taskq_list(queue_db)
    assert statuses[held.id] == "WAITING (limit reached)"
    [unstarted] = [r for r in rated if r.id not in claimed]
    assert statuses[unstarted.id] == "WAITING (rate limited)"
    if queue_db.database == "default":  # the admin shows the default backend's tables
        page = superuser.get(TASKS_URL).content.decode()
        assert "Waiting (limit reached)" in page
        assert "Waiting (rate limited)" in page


@database_only
def test_held_back_tasks_are_counted_per_queue(queue_db):
    hourly = limited(**FIVE_AN_HOUR)
    for n in range(7):
        enqueue(queue_db, hourly, n)
    enqueue(queue_db, tasks.echo, 1)
    backend = task_backends[queue_db.alias]
    [before] = backend.queue_stats(["default"])
    assert (before.waiting, before.held_back) == (8, 0)
    claim(queue_db, limit=20)  # 5 of the hourly ones, and echo
    [after] = backend.queue_stats(["default"])
    assert (after.waiting, after.held_back) == (2, 2)


@database_only
def test_the_dashboard_shows_held_back_tasks(queue_db, superuser):
    hourly = limited(**FIVE_AN_HOUR)
    for n in range(7):
        enqueue(queue_db, hourly, n)
    claim(queue_db, limit=20)
    page = superuser.get(reverse("admin:django_tasks_q_dashboard_changelist")).content.decode()
    assert "(2 held back)" in page
