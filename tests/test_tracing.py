"""OpenTelemetry tracing (django_tasks_q/tracing.py): the enqueue span's context
travels with the task, and the worker's span for each attempt is its child,
across processes, on every store.

This process exports to memory (the ``spans`` fixture); a worker process
started with TASKQ_TEST_TRACE_FILE exports to that file, one JSON object a
line (the ``trace_to_file`` start-up hook in tests/tasks.py).
"""

import json
import os

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.test.globals_test import reset_trace_globals
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from django_tasks_q.compat import TaskResultStatus, task_backends
from django_tasks_q.testing import run_tasks

from . import tasks
from .conftest import run_without, wait_until


@pytest.fixture
def spans():
    """A tracer provider for this process (as an application sets one), its
    finished spans kept in memory; none again afterwards."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    reset_trace_globals()
    trace.set_tracer_provider(provider)
    yield exporter
    reset_trace_globals()


def enqueue(backend, task, *args):
    return task.using(backend=backend.alias).enqueue(*args)


def result_of(backend, result):
    return task_backends[backend.alias].get_result(result.id)


def hex_id(value: int, digits: int) -> str:
    return f"0x{value:0{digits}x}"  # as Span.to_json() writes ids


def worker_spans(path) -> dict[str, list[dict]]:
    """The run spans a worker exported, by task id, in attempt order."""
    runs: dict[str, list[dict]] = {}
    for line in path.read_text().splitlines():
        span = json.loads(line)
        runs.setdefault(span["attributes"]["taskq.task.id"], []).append(span)
    return {
        task_id: sorted(s, key=lambda s: s["attributes"]["taskq.task.attempt"])
        for task_id, s in runs.items()
    }


def enqueue_span(exporter, result):
    [span] = [
        s for s in exporter.get_finished_spans() if s.attributes.get("taskq.task.id") == result.id
    ]
    return span


def run_attributes(result, attempt: int) -> dict:
    return {
        "messaging.system": "django_tasks_q",
        "messaging.operation.name": "run",
        "messaging.operation.type": "process",
        "messaging.destination.name": result.task.queue_name,
        "messaging.message.id": result.id,
        "taskq.task.id": result.id,
        "taskq.task.path": result.task.module_path,
        "taskq.task.queue": result.task.queue_name,
        "taskq.task.attempt": attempt,
    }


def enqueue_attributes(result) -> dict:
    attributes = run_attributes(result, 0)
    del attributes["taskq.task.attempt"]  # none made yet
    return attributes | {"messaging.operation.name": "enqueue", "messaging.operation.type": "send"}


def assert_child_of(run: dict, parent) -> None:
    """``run`` (a worker's span, as JSON) is a child of ``parent`` (a span here)."""
    assert run["context"]["trace_id"] == hex_id(parent.context.trace_id, 32)
    assert run["parent_id"] == hex_id(parent.context.span_id, 16)


@pytest.mark.parametrize("pool", ["thread", "process"])
def test_the_workers_run_span_is_a_child_of_the_enqueue_span(
    queue_db, spans, run_worker, tmp_path, pool
):
    with trace.get_tracer("tests").start_as_current_span("checkout"):
        plain = enqueue(queue_db, tasks.add, 2, 3)
        asynchronous = enqueue(queue_db, tasks.async_add, 4, 5)
    exported = tmp_path / "worker-spans.jsonl"
    worker = run_worker(queue_db, "--pool", pool, env={"TASKQ_TEST_TRACE_FILE": str(exported)})

    [checkout] = [s for s in spans.get_finished_spans() if s.name == "checkout"]
    runs = worker_spans(exported)
    assert runs.keys() == {plain.id, asynchronous.id}
    for result in (plain, asynchronous):
        assert result_of(queue_db, result).status == TaskResultStatus.SUCCESSFUL
        enqueued = enqueue_span(spans, result)
        path = result.task.module_path
        assert (enqueued.name, enqueued.kind) == (f"enqueue {path}", trace.SpanKind.PRODUCER)
        assert enqueued.parent.span_id == checkout.context.span_id
        assert dict(enqueued.attributes) == enqueue_attributes(result)
        [run] = runs[result.id]
        assert (run["name"], run["kind"]) == (f"run {path}", "SpanKind.CONSUMER")
        assert_child_of(run, enqueued)
        assert run["attributes"] == run_attributes(result, 1)
        assert run["status"] == {"status_code": "UNSET"}
    # Exported by the process that ran the tasks: the worker, or its children.
    pids = {run["resource"]["attributes"]["process.pid"] for [run] in runs.values()}
    assert os.getpid() not in pids
    if pool == "thread":
        assert pids == {worker.process.pid}
    else:
        assert worker.process.pid not in pids


def test_failed_attempts_record_their_errors_and_retries_keep_the_parent(
    queue_db, spans, start_worker, tmp_path
):
    with trace.get_tracer("tests").start_as_current_span("request"):
        retried = enqueue(queue_db, tasks.explicit_retry, queue_db.database, 0)
        failed = enqueue(queue_db, tasks.boom, "x")
    exported = tmp_path / "worker-spans.jsonl"
    worker = start_worker(queue_db, env={"TASKQ_TEST_TRACE_FILE": str(exported)})
    wait_until(lambda: queue_db.finished_count() == 2, message="both tasks to finish")
    worker.signal()
    assert worker.wait() == 0

    runs = worker_spans(exported)
    # Three attempts: Retry, Retry, then success; each a child of the one enqueue.
    assert [run["attributes"]["taskq.task.attempt"] for run in runs[retried.id]] == [1, 2, 3]
    for run in runs[retried.id]:
        assert_child_of(run, enqueue_span(spans, retried))
    assert [run["status"]["status_code"] for run in runs[retried.id]] == [
        "ERROR",
        "ERROR",
        "UNSET",
    ]
    [event] = runs[retried.id][0]["events"]
    assert event["name"] == "exception"
    assert event["attributes"]["exception.type"] == "django_tasks_q.exceptions.Retry"

    [run] = runs[failed.id]
    assert_child_of(run, enqueue_span(spans, failed))
    assert run["status"] == {"status_code": "ERROR", "description": "ValueError: boom"}
    [event] = run["events"]
    assert event["name"] == "exception"
    assert (event["attributes"]["exception.type"], event["attributes"]["exception.message"]) == (
        "ValueError",
        "boom",
    )
    assert 'raise ValueError("boom")' in event["attributes"]["exception.stacktrace"]
    assert result_of(queue_db, failed).status == TaskResultStatus.FAILED


def test_one_enqueue_span_for_a_batch_and_a_run_span_per_task(queue_db, spans):
    results = tasks.add.using(backend=queue_db.alias).enqueue_many([(1, 2), (3, 4), (5, 6)])
    [enqueued] = spans.get_finished_spans()
    assert enqueued.attributes["messaging.batch.message_count"] == 3
    assert "taskq.task.id" not in enqueued.attributes
    # Stored once per task, the same context for each.
    stored = [queue_db.trace_context(result.id) for result in results]
    assert stored[0] == stored[1] == stored[2]
    trace_id, span_id = enqueued.context.trace_id, enqueued.context.span_id
    flags = enqueued.context.trace_flags  # sampled (and the SDK's "random trace id")
    assert flags.sampled
    assert stored[0] == {"traceparent": f"00-{trace_id:032x}-{span_id:016x}-{flags:02x}"}
    spans.clear()

    run_tasks(queue_db.alias)

    runs = spans.get_finished_spans()
    assert sorted(span.attributes["taskq.task.id"] for span in runs) == [r.id for r in results]
    assert {(span.context.trace_id, span.parent.span_id) for span in runs} == {(trace_id, span_id)}


def test_a_trace_not_sampled_at_enqueue_is_not_sampled_at_run(queue_db, spans):
    # As an incoming request whose caller decided not to record the trace.
    upstream = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(0))
    with trace.use_span(NonRecordingSpan(upstream)):
        result = enqueue(queue_db, tasks.add, 1, 1)
    # The decision travels with the task, so the worker's sampler follows it.
    traceparent = queue_db.trace_context(result.id)["traceparent"]
    assert traceparent.startswith(f"00-{0xABC:032x}-") and traceparent.endswith("-00")

    [ran] = run_tasks(queue_db.alias)
    assert ran.status == TaskResultStatus.SUCCESSFUL
    assert spans.get_finished_spans() == ()


def test_without_a_tracer_provider_nothing_is_stored_or_traced(queue_db):
    assert trace.get_tracer_provider().__class__ is trace.ProxyTracerProvider
    result = enqueue(queue_db, tasks.add, 2, 3)
    assert queue_db.trace_context(result.id) is None
    [ran] = run_tasks(queue_db.alias)
    assert (ran.status, ran.return_value) == (TaskResultStatus.SUCCESSFUL, 5)


WITHOUT_OPENTELEMETRY = """
from django.conf import settings
settings.configure(
    INSTALLED_APPS=["django_tasks_q", "tests.projects.shop"],
    DATABASES={{"default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": {database!r}}}}},
    TASKS={{"default": {{"BACKEND": "django_tasks_q.backends.database.DatabaseBackend"}}}},
    USE_TZ=True,
)
import django
django.setup()
from django.core.management import call_command
from django_tasks_q import tracing
from django_tasks_q.models import Task
from tests.projects.shop.tasks import send_receipt
call_command("migrate", verbosity=0)
result = send_receipt.enqueue(42)
print("stored:", Task.objects.values_list("trace_context", flat=True).get())
call_command("runtaskworker", "--burst")
print("ran:", send_receipt.get_result(result.id).status)
print("tracing:", tracing.trace)
"""


def test_without_opentelemetry_tasks_enqueue_and_run_as_ever(tmp_path):
    done = run_without("opentelemetry", WITHOUT_OPENTELEMETRY.format(database=str(tmp_path / "db")))
    assert done.returncode == 0, done.stderr
    lines = [
        line
        for line in done.stdout.splitlines()
        if line.split(":")[0] in ("stored", "ran", "tracing")
    ]
    assert lines == ["stored: None", "ran: SUCCESSFUL", "tracing: None"]
