import logging
import sys
from argparse import ArgumentParser
from typing import TYPE_CHECKING, Any

from django.core.management.base import BaseCommand, CommandError

from django_tasks_q.exceptions import WorkerStartupError
from django_tasks_q.management.migrated import require_migrated
from django_tasks_q.management.queue_backend import queue_backend as get_queue_backend
from django_tasks_q.worker.worker import Worker, check_worker_id

from ...compat import DEFAULT_TASK_BACKEND_ALIAS

if TYPE_CHECKING:  # prometheus_client is optional
    from django_tasks_q.metrics import WorkerMetrics


class Command(BaseCommand):
    help = "Run a worker that executes queued tasks until stopped (SIGTERM/Ctrl-C)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--backend",
            default=DEFAULT_TASK_BACKEND_ALIAS,
            help="The TASKS alias to work for (default: %(default)s).",
        )
        parser.add_argument(
            "--queue",
            action="append",
            dest="queues",
            metavar="NAME",
            help="A queue to take tasks from; repeat for several (default: all "
            "of the backend's QUEUES).",
        )
        parser.add_argument(
            "--concurrency",
            type=int,
            default=4,
            help="Tasks run at once: threads or child processes (default: %(default)s).",
        )
        parser.add_argument(
            "--pool",
            choices=["thread", "process"],
            default="thread",
            help="Run tasks in threads (default; async tasks share one event loop), "
            "or in child processes: for CPU-bound work, and timeouts that kill.",
        )
        parser.add_argument(
            "--max-tasks-per-child",
            type=int,
            help="With --pool process: replace a child after it has run this many tasks.",
        )
        parser.add_argument(
            "--burst",
            action="store_true",
            help="Exit once no task is ready, instead of waiting for more.",
        )
        parser.add_argument("--max-tasks", type=int, help="Exit after running this many tasks.")
        parser.add_argument(
            "--poll-interval",
            type=float,
            help="Seconds between looks for new tasks when idle (default: the "
            "backend's poll_interval option).",
        )
        parser.add_argument(
            "--shutdown-timeout",
            type=float,
            default=25.0,
            help="On SIGTERM/SIGINT, seconds to let running tasks finish before "
            "handing them back to the queue (default: %(default)s).",
        )
        parser.add_argument(
            "--metrics-port",
            type=int,
            metavar="PORT",
            help="Serve this worker's Prometheus counters and histograms on "
            "http://0.0.0.0:PORT/metrics (needs django-tasks-q[prometheus]).",
        )
        parser.add_argument("--worker-id", help="Name this worker (default: host-pid-random).")
        parser.add_argument(
            "--no-schedules",
            action="store_false",
            dest="schedules",
            help="Don't enqueue periodic tasks; leave them to other workers.",
        )

    def handle(
        self,
        *args: Any,
        backend: str,
        queues: list[str] | None,
        concurrency: int,
        **options: Any,
    ) -> None:
        queue_backend = get_queue_backend(backend)
        if queues and queue_backend.queues:
            unknown = sorted(set(queues) - queue_backend.queues)
            if unknown:
                raise CommandError(
                    f"Queue(s) {', '.join(unknown)} are not in TASKS[{backend!r}]"
                    f"['QUEUES'] ({', '.join(sorted(queue_backend.queues))})."
                )
        if concurrency < 1:
            raise CommandError("--concurrency must be at least 1.")
        if options["max_tasks_per_child"] is not None and (
            options["pool"] != "process" or options["max_tasks_per_child"] < 1
        ):
            raise CommandError("--max-tasks-per-child needs --pool process and a number >= 1.")
        if options["worker_id"] is not None:
            try:
                check_worker_id(options["worker_id"])
            except ValueError as error:
                raise CommandError(error) from None
        self._configure_logging(options["verbosity"])
        require_migrated(queue_backend)
        metrics = self._serve_metrics(backend, options["metrics_port"])
        worker = Worker(
            queue_backend,
            queues=queues or sorted(queue_backend.queues) or None,
            concurrency=concurrency,
            burst=options["burst"],
            max_tasks=options["max_tasks"],
            poll_interval=options["poll_interval"],
            shutdown_timeout=options["shutdown_timeout"],
            worker_id=options["worker_id"],
            pool=options["pool"],
            max_tasks_per_child=options["max_tasks_per_child"],
            schedules=options["schedules"],
            metrics=metrics,
        )
        try:
            worker.run()
        except WorkerStartupError as error:
            raise CommandError(error) from None

    def _serve_metrics(self, backend: str, port: int | None) -> "WorkerMetrics | None":
        if port is None:
            return None
        try:
            from django_tasks_q.metrics import WorkerMetrics
        except ImportError as error:  # it names the extra to install
            raise CommandError(f"--metrics-port: {error}.") from None
        metrics = WorkerMetrics(backend)
        try:
            metrics.serve(port)
        except OSError as error:
            raise CommandError(f"--metrics-port {port}: {error.strerror}.") from None
        return metrics

    def _configure_logging(self, verbosity: int) -> None:
        """Log a line per task unless the project's LOGGING already says where."""
        logger = logging.getLogger("django_tasks_q")
        if logger.handlers or logging.getLogger().handlers:
            return
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel({0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG))
