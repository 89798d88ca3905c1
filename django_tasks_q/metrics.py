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
"""

from datetime import timedelta

from django.http import HttpResponse
from django.tasks import task_backends
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily
from prometheus_client.utils import floatToGoString

from .backends.base import queue_backends

# Seconds; the last bucket (+Inf) is added.
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class QueueCollector:
    """The queues of ``backend_aliases`` (none given: every django-tasks-q
    backend in TASKS, looked up at each scrape)."""

    def __init__(self, *backend_aliases, window=timedelta(minutes=5)):
        self.backend_aliases = backend_aliases
        self.window = window

    def families(self):
        window = f"{self.window.total_seconds():g}"
        return {
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
            "duration": GaugeHistogramMetricFamily(
                "taskq_task_duration_seconds",
                f"Run time of the last attempt of tasks that finished in the last {window} "
                "seconds, by queue.",
                labels=["backend", "queue"],
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

    def describe(self):
        # Names only: registering the collector must not query the database.
        return list(self.families().values())

    def collect(self):
        now = timezone.now()
        family = self.families()
        backends = (
            {alias: task_backends[alias] for alias in self.backend_aliases}
            if self.backend_aliases
            else queue_backends()
        )
        for alias, backend in backends.items():
            try:
                samples = self.read(alias, backend, now)
            except backend.transient_errors:
                # One store down must not hide the others' numbers.
                family["up"].add_metric([alias], 0)
                continue
            family["up"].add_metric([alias], 1)
            for name, labels, *value in samples:
                family[name].add_metric([alias, *labels], *value)
        return list(family.values())

    def read(self, alias, backend, now):
        """Every sample of one backend, as (family, labels, value...): all read
        before any is added, so a store failing halfway adds none."""
        samples = []
        for queue in backend.queue_stats(backend.queues, now=now, buckets=1):
            for state in ("waiting", "scheduled", "running", "blocked"):
                samples.append(("tasks", [queue.queue, state], getattr(queue, state)))
            samples.append(("oldest", [queue.queue], queue.oldest_waiting_seconds or 0))

        since = now - self.window
        for (queue, status), count in sorted(backend.finished_counts(since, now).items()):
            samples.append(("finished", [queue, status], count))
        for queue, (counts, total, seconds) in backend.run_times(since, DURATION_BUCKETS).items():
            buckets = [
                (floatToGoString(bound), n)
                for bound, n in zip(DURATION_BUCKETS, counts, strict=True)
            ]
            buckets.append(("+Inf", total))
            samples.append(("duration", [queue], buckets, seconds))

        workers = backend.workers(now)
        live = [w for w in workers if w.live]
        samples.append(("workers", ["live"], len(live)))
        samples.append(("workers", ["stale"], len(workers) - len(live)))
        samples.append(("slots", [], sum(w.concurrency for w in live)))
        return samples


registry = CollectorRegistry(auto_describe=True)
registry.register(QueueCollector())


def metrics_view(request):
    """The queue's metrics in Prometheus' text format. Open to anyone who can
    reach it: route it where only Prometheus can, or wrap it in your own check."""
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
