"""OpenTelemetry spans for enqueue and run (the ``opentelemetry`` extra).

``enqueue()`` runs in a PRODUCER span, "enqueue <task path>", and stores that
span's context with its tasks: a small JSON object written by the global
propagator (W3C ``traceparent``, and ``tracestate`` when there is one, unless
the application set another propagator). Each attempt runs in a CONSUMER span,
"run <task path>", whose parent is that stored context, so one trace holds the
request that enqueued a task and every attempt at it, in whichever process
ran them. A failed attempt's span records the exception and has ERROR status.

Without opentelemetry-api, or before the application sets a tracer provider
(the API alone records nothing), nothing is started or stored: enqueue and
run cost one check each.
"""

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from .backends.contract import ClaimedTask, EnqueueBatch

try:
    from opentelemetry import propagate, trace
except ImportError:  # the extra is not installed: tracing is off
    trace = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer

# The instrumentation's name, and its messaging.system.
NAME = "django_tasks_q"


def _tracer() -> "Tracer | None":
    """This package's tracer, or None while no tracer provider is set."""
    if trace is None:
        return None
    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return None
    return _tracer_of(provider)


@lru_cache(maxsize=1)
def _tracer_of(provider: "trace.TracerProvider") -> "Tracer":
    # Asked of the provider once: an SDK provider builds a new tracer per call.
    from . import __version__

    return provider.get_tracer(NAME, __version__)


def _attributes(task_path: str, queue: str, operation: str) -> dict[str, Any]:
    # messaging.*: OpenTelemetry's semantic conventions for messaging spans.
    return {
        "messaging.system": NAME,
        "messaging.operation.name": operation,
        "messaging.operation.type": "send" if operation == "enqueue" else "process",
        "messaging.destination.name": queue,
        "taskq.task.path": task_path,
        "taskq.task.queue": queue,
    }


def enqueue_span(batch: EnqueueBatch) -> AbstractContextManager[object]:
    """The span to write ``batch`` in; it sets ``batch.trace_context``."""
    tracer = _tracer()
    return nullcontext() if tracer is None else _enqueue_span(tracer, batch)


@contextmanager
def _enqueue_span(tracer: "Tracer", batch: EnqueueBatch) -> Iterator[object]:
    path, queue = batch.task.module_path, batch.task.queue_name
    attributes = _attributes(path, queue, "enqueue")
    if len(batch.ids) == 1:
        attributes["messaging.message.id"] = attributes["taskq.task.id"] = batch.ids[0]
    else:
        attributes["messaging.batch.message_count"] = len(batch.ids)
    with tracer.start_as_current_span(
        f"enqueue {path}", kind=trace.SpanKind.PRODUCER, attributes=attributes
    ) as span:
        # A valid context is stored even when not sampled: the run's span then
        # follows the same sampling decision instead of starting a trace of its own.
        if span.get_span_context().is_valid:
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            batch.trace_context = carrier or None
        yield span


class RunSpan:
    """An attempt's span, told of a failure the attempt caught."""

    def __init__(self, span: "Span | None" = None) -> None:
        self._span = span

    def failed(self, error: BaseException) -> None:
        if self._span is not None:
            self._span.record_exception(error)
            self._span.set_status(trace.StatusCode.ERROR, f"{type(error).__name__}: {error}")


UNTRACED = RunSpan()


def run_span(claimed: ClaimedTask) -> AbstractContextManager[RunSpan]:
    """The span to run an attempt of ``claimed`` in, a child of its enqueue's."""
    tracer = _tracer()
    return nullcontext(UNTRACED) if tracer is None else _run_span(tracer, claimed)


@contextmanager
def _run_span(tracer: "Tracer", claimed: ClaimedTask) -> Iterator[RunSpan]:
    stored = claimed.trace_context
    # What is not a JSON object of strings (a row edited by hand) is left out.
    carrier = {k: v for k, v in stored.items() if isinstance(v, str)} if stored else {}
    attributes = _attributes(claimed.task_path, claimed.queue_name, "run")
    attributes["messaging.message.id"] = attributes["taskq.task.id"] = claimed.id
    attributes["taskq.task.attempt"] = claimed.attempts
    with tracer.start_as_current_span(
        f"run {claimed.task_path}",
        context=propagate.extract(carrier),
        kind=trace.SpanKind.CONSUMER,
        attributes=attributes,
    ) as span:
        yield RunSpan(span)
