"""``taskq health``: a probe for Kubernetes, systemd or a load balancer, whose
exit code says what is wrong (the codes are documented in the docs' commands reference)."""

from datetime import datetime
from enum import IntEnum

from .backends.base import QueueBackend
from .management.migrated import unapplied_migrations


class Health(IntEnum):
    HEALTHY = 0
    STORE_UNAVAILABLE = 1  # unreachable (taskq's error for the store's errors), or not migrated
    NO_LIVE_WORKER = 2  # a queue that no live worker serves
    WORKER_NOT_LIVE = 3  # the worker named by --worker has no heartbeat within the lease


def check_health(
    backend: QueueBackend, queues: list[str], worker_id: str | None, now: datetime
) -> tuple[Health, str]:
    """How the queue is, and one line saying so. The store's own errors (its
    ``transient_errors``) propagate: the caller reports them as unavailable."""
    database = backend.tables_database
    if database is not None and (missing := unapplied_migrations(database)):
        return Health.STORE_UNAVAILABLE, (
            f"TASKS[{backend.alias!r}]: the database {database!r} lacks the "
            f"django_tasks_q migration {missing[0]}: run `manage.py migrate`."
        )
    live = [worker for worker in backend.workers(now) if worker.live]
    if worker_id is not None:
        if worker_id not in {worker.id for worker in live}:
            return Health.WORKER_NOT_LIVE, (
                f"Worker {worker_id!r} has sent no heartbeat in the last "
                f"{backend.lease.total_seconds():g} s (the lease)."
            )
        return Health.HEALTHY, f"Worker {worker_id!r} is live."
    unserved = [
        queue
        for queue in queues
        if not any(not worker.queues or queue in worker.queues for worker in live)
    ]
    if unserved:
        return Health.NO_LIVE_WORKER, (
            f"No live worker serves queue(s) {', '.join(unserved)} of TASKS[{backend.alias!r}]."
        )
    return Health.HEALTHY, f"A live worker serves each of {', '.join(queues)}."
