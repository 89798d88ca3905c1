"""Prometheus metrics for the queue (``pip install "django-tasks-q[prometheus]"``).

Serve them from a URL of your project::

    from django_tasks_q.metrics import metrics_view

    urlpatterns += [path("metrics/", metrics_view)]

or add the collector to a registry you already expose::

    from prometheus_client import REGISTRY
    from django_tasks_q.metrics import QueueCollector

    REGISTRY.register(QueueCollector())

Every value is read from the database when Prometheus scrapes, with a handful of
aggregate queries whatever the size of the tables, so every web process
reports the same numbers. They are gauges: the history is pruned, so a count
over it can go down. Counts of finished tasks and their durations cover the
results that finished in the last ``window`` (5 minutes by default).
"""

from datetime import timedelta

from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, Sum
from django.http import HttpResponse
from django.tasks import DEFAULT_TASK_BACKEND_ALIAS
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily
from prometheus_client.utils import floatToGoString

from . import operations, stats
from .models import ResultStatus, TaskResult

# Seconds; the last bucket (+Inf) is added.
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class QueueCollector:
    def __init__(self, backend_alias=DEFAULT_TASK_BACKEND_ALIAS, window=timedelta(minutes=5)):
        self.backend_alias = backend_alias
        self.window = window

    def families(self):
        window = f"{self.window.total_seconds():g}"
        return {
            "tasks": GaugeMetricFamily(
                "taskq_tasks",
                "Tasks in the queue, by queue and state (waiting, scheduled, running).",
                labels=["queue", "state"],
            ),
            "oldest": GaugeMetricFamily(
                "taskq_oldest_waiting_seconds",
                "How long the longest-waiting ready task of each queue has waited.",
                labels=["queue"],
            ),
            "finished": GaugeMetricFamily(
                "taskq_finished_tasks",
                f"Tasks that finished in the last {window} seconds, by queue and status.",
                labels=["queue", "status"],
            ),
            "duration": GaugeHistogramMetricFamily(
                "taskq_task_duration_seconds",
                f"Run time of the last attempt of tasks that finished in the last {window} "
                "seconds, by queue.",
                labels=["queue"],
            ),
            "workers": GaugeMetricFamily(
                "taskq_workers",
                "Registered workers: live (recent heartbeat) or stale.",
                labels=["state"],
            ),
            "slots": GaugeMetricFamily(
                "taskq_worker_slots",
                "Tasks the live workers can run at once (their summed concurrency).",
            ),
        }

    def describe(self):
        # Names only: registering the collector must not query the database.
        return list(self.families().values())

    def collect(self):
        using = operations.queue_database(self.backend_alias)
        now = timezone.now()
        family = self.families()

        queues = stats.queue_stats(
            using, queues=stats.configured_queues(self.backend_alias), now=now, buckets=1
        )
        for queue in queues:
            for state in ("waiting", "scheduled", "running"):
                family["tasks"].add_metric([queue.queue, state], getattr(queue, state))
            family["oldest"].add_metric([queue.queue], queue.oldest_waiting_seconds or 0)

        duration = ExpressionWrapper(
            F("finished_at") - F("last_attempted_at"), output_field=DurationField()
        )
        finished = (
            TaskResult.objects.using(using)
            .filter(finished_at__gt=now - self.window)
            .order_by()
            .annotate(duration=duration)
        )
        for row in finished.values("queue_name", "status").annotate(n=Count("pk")):
            family["finished"].add_metric([row["queue_name"], row["status"]], row["n"])

        le = {f"le_{i}": bound for i, bound in enumerate(DURATION_BUCKETS)}
        ran = finished.filter(last_attempted_at__isnull=False).exclude(
            status=ResultStatus.CANCELLED
        )
        for row in ran.values("queue_name").annotate(
            total=Count("pk"),
            seconds=Sum("duration"),
            **{
                key: Count("pk", filter=Q(duration__lte=timedelta(seconds=bound)))
                for key, bound in le.items()
            },
        ):
            buckets = [(floatToGoString(bound), row[key]) for key, bound in le.items()]
            buckets.append(("+Inf", row["total"]))
            seconds = row["seconds"].total_seconds() if row["seconds"] else 0.0
            family["duration"].add_metric([row["queue_name"]], buckets, seconds)

        workers = stats.workers(using, now=now, timeout=stats.heartbeat_timeout(self.backend_alias))
        live = [w for w in workers if w.live]
        family["workers"].add_metric(["live"], len(live))
        family["workers"].add_metric(["stale"], len(workers) - len(live))
        family["slots"].add_metric([], sum(w.concurrency for w in live))
        return list(family.values())


registry = CollectorRegistry(auto_describe=True)
registry.register(QueueCollector())


def metrics_view(request):
    """The queue's metrics in Prometheus' text format. Open to anyone who can
    reach it: route it where only Prometheus can, or wrap it in your own check."""
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
