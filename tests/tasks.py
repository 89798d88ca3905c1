"""Tasks the tests enqueue. Each records its runs in ``Execution`` on ``db``."""

import asyncio
import json
import os
import signal
import threading
import time
from pathlib import Path

from asgiref.sync import sync_to_async

from django_tasks_q import Retry, on_worker_start, periodic, task
from django_tasks_q.compat import task as django_task

from .models import Execution


def _record(db, label, context=None):
    Execution.objects.using(db).create(
        label=label,
        task_id=context.task_result.id if context else "",
        attempt=context.attempt if context else 0,
    )


@task(takes_context=True)
def record(context, db, label):
    _record(db, label, context)
    return label


@django_task
def add(a, b):
    """A plain Django task (``django.tasks.task``), no django-tasks-q options."""
    return a + b


@task
async def async_add(a, b):
    await asyncio.sleep(0.01)
    return a + b


@task(takes_context=True)
async def async_record(context, db, label):
    await sync_to_async(_record)(db, label, context)
    return label


@task
def echo(*args, **kwargs):
    return {"args": args, "kwargs": kwargs}


@task(takes_context=True, max_retries=3, retry_backoff=0.2, retry_jitter=False)
def fail_until(context, db, succeed_on):
    _record(db, "attempt", context)
    if context.attempt < succeed_on:
        raise ValueError(f"attempt {context.attempt} fails")
    return context.attempt


@task(takes_context=True, max_retries=2)
def explicit_retry(context, db, delay):
    _record(db, "attempt", context)
    if context.attempt < 3:
        raise Retry(delay=delay, reason="asked to retry")
    return "done"


@task(takes_context=True)
def retry_without_retries(context, db):
    raise Retry(delay=0)


@task
def unserialisable_return():
    return {1, 2, 3}


@task
def poison(kind):
    """End with what a store may not hold: a NUL or a lone surrogate."""
    if kind == "raise":
        raise ValueError("bad\x00byte")
    return {"nul": "a\x00b", "surrogate": "x\ud800y"}[kind]


class CustomBaseException(BaseException):
    pass


@task
async def async_raise_base(name):
    """Raise a BaseException that is not an Exception, from a coroutine."""
    await asyncio.sleep(0)
    raise {
        "GeneratorExit": GeneratorExit,
        "KeyboardInterrupt": KeyboardInterrupt,
        "SystemExit": SystemExit,
        "custom": CustomBaseException,
    }[name](f"{name} from a task")


@task(takes_context=True)
def wait_for_file(context, db, path, timeout=60):
    """Run until ``path`` exists: lets a test hold a task in the RUNNING state."""
    _record(db, "started", context)
    deadline = time.monotonic() + timeout
    while not Path(path).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.02)
    _record(db, "finished", context)
    return "released"


@task(takes_context=True, timeout=0.5, max_retries=1, retry_backoff=0)
def overrun(context, db, seconds):
    _record(db, "attempt", context)
    time.sleep(seconds)
    return "too late"


def plain_function():
    """Not a task: a row naming it must not run it."""
    Path("/tmp/taskq-plain-function-ran").touch()


NOT_A_TASK = 42


@task(takes_context=True, max_retries=3)
def long_task(context, db, path):
    """Like wait_for_file, with retries: survives its worker being killed."""
    return wait_for_file.call(context, db, path)


@task(takes_context=True, max_retries=8, retry_backoff=0.05)
def soak_task(context, db, label):
    _record(db, label, context)
    return label


@task(takes_context=True)
def record_pid(context, db):
    _record(db, f"pid:{os.getpid()}", context)
    return os.getpid()


@task(max_retries=1, retry_backoff=0)
def crash(code):
    """Die the way a segfault or the OOM killer would end a process."""
    os._exit(code)


@task(takes_context=True)
def kill_worker_on(context, db, attempts):
    """SIGKILL the worker running it on the given attempts, as the OOM killer would."""
    _record(db, "started", context)
    if context.attempt in attempts:
        os.kill(os.getpid(), signal.SIGKILL)
    return context.attempt


@task(takes_context=True)
def kill_worker_then_retry(context, db):
    """Kill its process on the first attempt; on the next, ask for a retry it does not have."""
    _record(db, "started", context)
    if context.attempt == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    raise Retry(delay=0, reason="asked to retry")


@task(takes_context=True, timeout=30)
async def async_barrier(context, db, parties):
    """Finishes only once ``parties`` of these run at the same time."""
    await sync_to_async(_record)(db, f"thread:{threading.current_thread().name}", context)
    count = sync_to_async(Execution.objects.using(db).filter(label__startswith="thread:").count)
    while await count() < parties:
        await asyncio.sleep(0.02)
    return "met"


@task(takes_context=True, timeout=0.3, max_retries=0)
async def async_overrun(context, db):
    await asyncio.sleep(30)


@task(takes_context=True, max_retries=3)
def until_aborted(context, db):
    """A long thread-pool task done right: it checks its context between steps."""
    _record(db, "started", context)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if context.abort_requested:
            _record(db, "saw the abort", context)
            context.raise_if_aborted()
        time.sleep(0.02)
    return "never aborted"


@task(takes_context=True, max_retries=3)
async def async_until_aborted(context, db):
    await sync_to_async(_record)(db, "started", context)
    await asyncio.sleep(600)
    return "never aborted"


@task(takes_context=True, max_retries=3)
def sleep_for_minutes(context, db):
    """Never checks for an abort: only killing its process stops it."""
    _record(db, f"started:{os.getpid()}", context)
    time.sleep(600)
    return "woke up"


@on_worker_start
def test_resource():
    """Every test worker runs this. TASKQ_TEST_HOOK_LOG: append this process's
    pid to that file; TASKQ_TEST_HOOK_FAIL: raise; TASKQ_TEST_HOOK_WAIT: wait
    until that file exists."""
    if os.environ.get("TASKQ_TEST_HOOK_FAIL"):
        raise RuntimeError("the test model is missing")
    if log := os.environ.get("TASKQ_TEST_HOOK_LOG"):
        with open(log, "a") as file:
            file.write(f"{os.getpid()}\n")
    if path := os.environ.get("TASKQ_TEST_HOOK_WAIT"):
        deadline = time.monotonic() + 120
        while not Path(path).exists() and time.monotonic() < deadline:
            time.sleep(0.02)
    return {"pid": os.getpid()}


@on_worker_start
def trace_to_file():
    """TASKQ_TEST_TRACE_FILE: export this process's OpenTelemetry spans to that
    file, one JSON object a line, as each ends (tests/test_tracing.py)."""
    if path := os.environ.get("TASKQ_TEST_TRACE_FILE"):
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

        exporter = ConsoleSpanExporter(
            out=open(path, "a"),  # written to until the process exits
            formatter=lambda span: span.to_json(indent=None) + "\n",
        )
        provider = TracerProvider(resource=Resource({"process.pid": os.getpid()}))
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)


@task(takes_context=True)
def read_resource(context):
    return {"hook_pid": context.resources["test_resource"]["pid"], "task_pid": os.getpid()}


@task(takes_context=True)
async def async_read_resource(context):
    return {"hook_pid": context.resources["test_resource"]["pid"], "task_pid": os.getpid()}


@task(store_result=False)
def unstored_result():
    return {1, 2, 3}  # not JSON: with store_result=False not even checked


@task(unique=True)
def unique_echo(*args, **kwargs):
    """Queued at most once at a time per set of arguments."""
    return {"args": args, "kwargs": kwargs}


@task(takes_context=True, expires=3600)
def record_soon(context, db, label):
    """Must start within an hour of its run_after."""
    _record(db, label, context)
    return label


# Only in the worker processes of test_schedules.py, which set this to
# "<backend alias>:<database alias>": declared everywhere, a schedule ticking
# every second would enqueue tasks in the workers of every other test.
if _schedule := os.environ.get("TASKQ_TEST_SCHEDULE"):
    _alias, _db = _schedule.split(":")
    periodic(every=1, name="every-second", args=(_db, "tick"))(record.using(backend=_alias))


@task
def double(value, *extra):
    """A link of a chain: its first argument is the previous task's value."""
    return value * 2


@task
def boom(*args):
    raise ValueError("boom")


# -- limits (tests/test_limits.py): each run appends one JSON line to ``log``, with
# its own start and end times (time.time()) and the time its attempt was claimed.


def _log_span(context, log, seconds, **extra):
    start = time.time()
    time.sleep(seconds)
    end = time.time()
    line = {
        "id": context.task_result.id,
        "start": start,
        "end": end,
        "claimed": context.task_result.last_attempted_at.timestamp(),
        **extra,
    }
    with open(log, "a") as file:  # one short append per run: whole lines
        file.write(json.dumps(line) + "\n")


def sync_customer(customer_id, full=False):
    """Made into limited tasks by tests/test_limits.py, with the limits under test."""


@task(takes_context=True, concurrency=2)
def two_at_a_time(context, log, seconds):
    _log_span(context, log, seconds)


@task(takes_context=True, concurrency=1, limit_key="customer")
def one_per_customer(context, log, seconds, customer):
    _log_span(context, log, seconds, customer=customer)


@task(takes_context=True, rate_limit="5/s")
def five_per_second(context, log):
    _log_span(context, log, 0)


@task(takes_context=True)
def span(context, log, seconds):
    _log_span(context, log, seconds)


@task(takes_context=True, concurrency=1)
def one_at_a_time_until(context, log, release):
    """Logs its start at once, then runs until ``release`` exists."""
    with open(log, "a") as file:
        file.write(json.dumps({"id": context.task_result.id, "started": time.time()}) + "\n")
    while not Path(release).exists():
        time.sleep(0.02)
    _log_span(context, log, 0)
