"""Wake idle workers the moment a task is committed: PostgreSQL LISTEN/NOTIFY.

Enqueueing runs ``pg_notify('django_tasks_q', <queue>)`` in the enqueueing
transaction (see ``postgres.py``), so the notification is delivered when, and only
if, that transaction commits. The listener holds its own connection (LISTEN
lasts as long as the session) and only sets an event: the worker's loop does
the claiming. Polling stays as the fallback, so a lost notification costs at
most one poll interval.

Abort requests travel the same way on their own channel: an operator's abort
notifies ``django_tasks_q_abort`` with the id of the worker holding the task,
and only that worker looks.
"""

import logging
import threading
from collections.abc import Callable

from ...backoff import Backoff
from .statements import ABORT_CHANNEL, WAKE_CHANNEL

logger = logging.getLogger("django_tasks_q.worker")


class PostgresListener:
    def __init__(
        self,
        connection_params: dict,
        queues: list[str] | None,
        wake: Callable[[], None],
        worker_id: str | None = None,
        on_abort: Callable[[], None] | None = None,
    ):
        self._params = {**connection_params, "autocommit": True}
        self._queues = set(queues) if queues else None
        self._wake = wake
        self._worker_id = worker_id
        self._on_abort = on_abort
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="taskq-listener", daemon=True)

    def start(self) -> "PostgresListener":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        import psycopg  # here: PostgreSQL is an optional extra

        backoff = Backoff()
        while not self._stopped.is_set():
            try:
                with psycopg.connect(**self._params) as connection:
                    connection.execute(f"LISTEN {WAKE_CHANNEL}")
                    if self._on_abort:
                        connection.execute(f"LISTEN {ABORT_CHANNEL}")
                    backoff.reset()
                    # Anything committed while we were not listening: look now.
                    self._wake()
                    if self._on_abort:
                        self._on_abort()
                    while not self._stopped.is_set():
                        for notification in connection.notifies(timeout=1.0):
                            self._dispatch(notification.channel, notification.payload)
            except psycopg.Error as error:
                wait = backoff.next()
                logger.warning("LISTEN connection failed (%s); retrying in %.1f s", error, wait)
                self._stopped.wait(wait)

    def _dispatch(self, channel: str, payload: str) -> None:
        if channel == ABORT_CHANNEL:
            if payload == self._worker_id:
                self._on_abort()
        elif self._queues is None or payload in self._queues:
            self._wake()
