"""The Prometheus collector and view."""

from datetime import timedelta

import pytest
from django.db import connections
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from django_tasks_q.metrics import QueueCollector, metrics_view
from django_tasks_q.models import ResultStatus, TaskStatus

from .factories import make_result, make_task, make_worker

# About the SQL tables: the database backends only.
pytestmark = pytest.mark.database_only


def scrape(backend):
    registry = CollectorRegistry()
    registry.register(QueueCollector(backend.alias))
    text = generate_latest(registry).decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return text, samples


def test_counts_durations_and_workers(queue_db):
    make_task(queue_db)
    make_task(queue_db)
    make_task(queue_db, run_in=timedelta(hours=1))
    make_task(queue_db, queue_name="emails", status=TaskStatus.RUNNING)
    make_task(queue_db, queue_name="other", status=TaskStatus.BLOCKED)  # for other tasks
    for ran_for in (0.003, 0.2, 0.2, 7):
        make_result(queue_db, ResultStatus.SUCCESSFUL, ran_for=timedelta(seconds=ran_for))
    make_result(queue_db, ran_for=timedelta(seconds=1))
    make_result(queue_db, finished_ago=timedelta(hours=1))  # before the window
    make_result(queue_db, ResultStatus.CANCELLED, queue_name="emails", last_attempted_at=None)
    make_worker(queue_db, "live-1", concurrency=8)
    make_worker(queue_db, "live-2", concurrency=2)
    make_worker(queue_db, "stale", heartbeat_ago=timedelta(hours=1))

    text, samples = scrape(queue_db)

    def value(name, **labels):
        return samples.get((name, tuple(sorted({"backend": queue_db.alias, **labels}.items()))))

    assert value("taskq_tasks", queue="default", state="waiting") == 2
    assert value("taskq_tasks", queue="default", state="scheduled") == 1
    assert value("taskq_tasks", queue="emails", state="running") == 1
    assert value("taskq_tasks", queue="other", state="waiting") == 0
    assert value("taskq_tasks", queue="other", state="blocked") == 1
    assert value("taskq_tasks", queue="default", state="blocked") == 0
    assert value("taskq_oldest_waiting_seconds", queue="default") >= 5
    assert value("taskq_finished_tasks", queue="default", status="SUCCESSFUL") == 4
    assert value("taskq_finished_tasks", queue="default", status="FAILED") == 1
    assert value("taskq_finished_tasks", queue="emails", status="CANCELLED") == 1
    # The histogram of run times: cumulative buckets, a count and a sum.
    assert value("taskq_task_duration_seconds_bucket", queue="default", le="0.01") == 1
    assert value("taskq_task_duration_seconds_bucket", queue="default", le="0.25") == 3
    assert value("taskq_task_duration_seconds_bucket", queue="default", le="5.0") == 4
    assert value("taskq_task_duration_seconds_bucket", queue="default", le="+Inf") == 5
    assert value("taskq_task_duration_seconds_gcount", queue="default") == 5
    assert abs(value("taskq_task_duration_seconds_gsum", queue="default") - 8.403) < 1e-6
    assert value("taskq_task_duration_seconds_gcount", queue="emails") is None
    assert value("taskq_workers", state="live") == 2 and value("taskq_workers", state="stale") == 1
    assert value("taskq_worker_slots") == 10
    assert "# TYPE taskq_task_duration_seconds histogram" in text  # text format 0.0.4


def test_a_scrape_is_a_few_aggregate_queries_whatever_the_size(queue_db):
    for n in range(30):
        make_result(queue_db, queue_name=["default", "emails"][n % 2])
        make_task(queue_db)
    with CaptureQueriesContext(connections[queue_db.database]) as queries:
        scrape(queue_db)
    assert len(queries) <= 8  # 2 of them: the groups at their limits (held-back counts)
    assert all("GROUP BY" in q["sql"] or "worker" in q["sql"] for q in queries)


def test_registering_the_collector_does_not_query(queue_db):
    with CaptureQueriesContext(connections[queue_db.database]) as queries:
        CollectorRegistry(auto_describe=True).register(QueueCollector(queue_db.alias))
    assert len(queries) == 0


def test_metrics_view(queue_db, settings):
    settings.TASKS = {**settings.TASKS, "default": settings.TASKS[queue_db.alias]}
    make_task(queue_db, queue_name="emails")
    response = metrics_view(RequestFactory().get("/metrics/"))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    # Every django-tasks-q backend in TASKS, told apart by the backend label.
    assert 'taskq_tasks{backend="default",queue="emails",state="waiting"} 1.0' in text
    assert 'taskq_backend_up{backend="default"} 1.0' in text
