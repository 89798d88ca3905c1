"""Prometheus metrics for the queue (``pip install "django-tasks-q[prometheus]"``).

Serve them from a URL of your project::

    from django_tasks_q.metrics import metrics_view

    urlpatterns += [path("metrics/", metrics_view)]

or add the collector to a registry you already expose::

    from prometheus_client import REGISTRY
    from django_tasks_q.metrics import QueueCollector

    REGISTRY.register(QueueCollector())

Every value is read from the queues' stores when Prometheus scrapes, with a
handful of aggregate reads whatever the size of the queues, so every web
process reports the same numbers. Each sample has a ``backend`` label: the
TASKS alias (every django-tasks-q backend is exported, database and Redis
alike). They are gauges: the history is pruned, so a count over it can go
down. Counts of finished tasks and their durations cover the tasks that
finished in the last ``window`` (5 minutes by default; on Redis, counted per
minute, from the start of the window's first minute). Run-time histograms
need the database's history: a Redis backend has none.

Counters and histograms (``rate()``, error ratios) come from the workers:
``runtaskworker --metrics-port PORT`` serves each worker's own, counted as it
records its tasks (see ``WorkerMetrics``); Prometheus scrapes every worker and
sums them.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.http import HttpRequest, HttpResponse
from django.utils import timezone

try:
    from prometheus_client import (
        CONTENT_TYPE_LATEST,
        CollectorRegistry,
        Counter,
        Histogram,
        generate_latest,
        start_http_server,
    )
    from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily, Metric
    from prometheus_client.utils import floatToGoString
except ImportError:
    raise ImportError(
        'django_tasks_q.metrics needs prometheus-client: pip install "django-tasks-q[prometheus]"',
        name="prometheus_client",
    ) from None

from .backends.base import QueueBackend, queue_backends
from .backends.contract import Outcome, QueueFigures
from .compat import task_backends

# Seconds; the last bucket (+Inf) is added.
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
# A task waits from well under a second (an idle worker) to hours (a backlog).
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)


@dataclass(slots=True)
class Families:
    """One scrape's metric families: the gauges by short name, and the run times."""

    gauges: dict[str, GaugeMetricFamily]
    durations: GaugeHistogramMetricFamily

    def all(self) -> list[Metric]:
        return [*self.gauges.values(), self.durations]


@dataclass(slots=True)
class Samples:
    """What one backend reports, read before any of it is added to the families."""

    gauges: list[tuple[str, list[str], float]] = field(default_factory=list)  # name, labels
    # (labels, [(bucket bound, tasks that took at most that)], summed seconds)
    durations: list[tuple[list[str], list[tuple[str, float]], float]] = field(default_factory=list)


class QueueCollector:
    """The queues of ``backend_aliases`` (none given: every django-tasks-q
    backend in TASKS, looked up at each scrape)."""

    def __init__(self, *backend_aliases: str, window: timedelta = timedelta(minutes=5)) -> None:
        self.backend_aliases = backend_aliases
        self.window = window

    def families(self) -> Families:
        window = f"{self.window.total_seconds():g}"
        gauges = {
            "up": GaugeMetricFamily(
                "taskq_backend_up",
                "Whether the backend's store answered this scrape (1) or not (0).",
                labels=["backend"],
            ),
            "tasks": GaugeMetricFamily(
                "taskq_tasks",
                "Tasks in the queue, by queue and state (waiting, scheduled, running, blocked).",
                labels=["backend", "queue", "state"],
            ),
            "held_back": GaugeMetricFamily(
                "taskq_held_back_tasks",
                "Waiting tasks (counted in taskq_tasks' waiting too) that their "
                "concurrency or rate limits, or their queue's, keep from starting now.",
                labels=["backend", "queue"],
            ),
            "oldest": GaugeMetricFamily(
                "taskq_oldest_waiting_seconds",
                "How long the longest-waiting ready task of each queue has waited.",
                labels=["backend", "queue"],
            ),
            "finished": GaugeMetricFamily(
                "taskq_finished_tasks",
                f"Tasks that finished in the last {window} seconds, by queue and status.",
                labels=["backend", "queue", "status"],
            ),
            "workers": GaugeMetricFamily(
                "taskq_workers",
                "Registered workers: live (recent heartbeat) or stale.",
                labels=["backend", "state"],
            ),
            "slots": GaugeMetricFamily(
                "taskq_worker_slots",
                "Tasks the live workers can run at once (their summed concurrency).",
                labels=["backend"],
            ),
        }
        durations = GaugeHistogramMetricFamily(
            "taskq_task_duration_seconds",
            f"Run time of the last attempt of tasks that finished in the last {window} "
            "seconds, by queue.",
            labels=["backend", "queue"],
        )
        return Families(gauges, durations)

    def describe(self) -> list[Metric]:
        # Names only: registering the collector must not query the database.
        return self.families().all()

    def backends(self) -> dict[str, QueueFigures]:
        if not self.backend_aliases:
            return dict(queue_backends())
        backends: dict[str, QueueFigures] = {}
        for alias in self.backend_aliases:
            backend = task_backends[alias]
            if not isinstance(backend, QueueBackend):
                raise TypeError(f"TASKS[{alias!r}] is not a django-tasks-q backend: no metrics.")
            backends[alias] = backend
        return backends

    def collect(self) -> list[Metric]:
        now = timezone.now()
        family = self.families()
        up = family.gauges["up"]
        for alias, backend in self.backends().items():
            try:
                samples = self.read(backend, now)
            except backend.transient_errors:
                # One store down must not hide the others' numbers.
                up.add_metric([alias], 0)
                continue
            up.add_metric([alias], 1)
            for name, labels, value in samples.gauges:
                family.gauges[name].add_metric([alias, *labels], value)
            for labels, buckets, seconds in samples.durations:
                family.durations.add_metric([alias, *labels], buckets, seconds)
        return family.all()

    def read(self, backend: QueueFigures, now: datetime) -> Samples:
        """Every sample of one backend: all read before any is added, so a
        store failing halfway adds none."""
        samples = Samples()
        gauges = samples.gauges
        for queue in backend.queue_stats(backend.queues, now=now, buckets=1):
            gauges.append(("tasks", [queue.queue, "waiting"], queue.waiting))
            gauges.append(("tasks", [queue.queue, "scheduled"], queue.scheduled))
            gauges.append(("tasks", [queue.queue, "running"], queue.running))
            gauges.append(("tasks", [queue.queue, "blocked"], queue.blocked))
            gauges.append(("held_back", [queue.queue], queue.held_back))
            gauges.append(("oldest", [queue.queue], queue.oldest_waiting_seconds or 0))

        since = now - self.window
        for (name, status), count in sorted(backend.finished_counts(since, now).items()):
            gauges.append(("finished", [name, status], count))
        for name, (counts, total, seconds) in backend.run_times(since, DURATION_BUCKETS).items():
            buckets: list[tuple[str, float]] = [
                (floatToGoString(bound), n)
                for bound, n in zip(DURATION_BUCKETS, counts, strict=True)
            ]
            buckets.append(("+Inf", total))
            samples.durations.append(([name], buckets, seconds))

        workers = backend.workers(now)
        live = [w for w in workers if w.live]
        gauges.append(("workers", ["live"], len(live)))
        gauges.append(("workers", ["stale"], len(workers) - len(live)))
        gauges.append(("slots", [], sum(w.concurrency for w in live)))
        return samples


registry = CollectorRegistry(auto_describe=True)
registry.register(QueueCollector())


def metrics_view(request: HttpRequest) -> HttpResponse:
    """The queue's metrics in Prometheus' text format. Open to anyone who can
    reach it: route it where only Prometheus can, or wrap it in your own check."""
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


class WorkerMetrics:
    """One worker process's counters and histograms, on its own port.

    Counted where the worker records its tasks, so they are exact and
    monotonic, and need no store: a count over the tables could go down as
    results are pruned (or, on Redis, expire), which ``rate()`` would read as a
    reset. Each worker counts only its own tasks; Prometheus sums the workers.
    A restart starts the counters at 0 again, which ``rate()`` handles.
    """

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.registry = CollectorRegistry()
        by_task = ["backend", "queue", "task"]
        self.finished = Counter(
            "taskq_tasks_finished_total",
            "Tasks this worker finished, by queue, task and final status.",
            [*by_task, "status"],
            registry=self.registry,
        )
        self.retries = Counter(
            "taskq_task_retries_total",
            "Attempts that failed and were scheduled to run again.",
            by_task,
            registry=self.registry,
        )
        self.recovered = Counter(
            "taskq_tasks_recovered_total",
            "Tasks this worker took back from workers that stopped renewing their leases.",
            ["backend"],
            registry=self.registry,
        )
        self.queue_wait = Histogram(
            "taskq_task_queue_wait_seconds",
            "From when an attempt was due (run_after) to when it started.",
            ["backend", "queue"],
            buckets=WAIT_BUCKETS,
            registry=self.registry,
        )
        self.run_time = Histogram(
            "taskq_task_run_seconds",
            "How long each attempt ran, by queue and task.",
            by_task,
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )

    def serve(self, port: int, address: str = "0.0.0.0") -> None:
        """Serve /metrics from a thread of this process."""
        start_http_server(port, address, registry=self.registry)

    def recorded(self, outcome: Outcome) -> None:
        """Count an attempt whose outcome the store has recorded."""
        claimed = outcome.claimed
        labels = (self.backend, claimed.queue_name, claimed.task_path)
        wait = (claimed.last_attempted_at - claimed.run_after).total_seconds()
        self.queue_wait.labels(self.backend, claimed.queue_name).observe(max(wait, 0.0))
        self.run_time.labels(*labels).observe(outcome.duration)
        if outcome.status == Outcome.RETRY:
            self.retries.labels(*labels).inc()
        else:
            self.finished.labels(*labels, outcome.status).inc()

    def recovered_tasks(self, count: int) -> None:
        self.recovered.labels(self.backend).inc(count)
