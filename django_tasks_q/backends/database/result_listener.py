"""``wait()`` on PostgreSQL: woken by a notification, not by polling.

A caller waiting for a task marks the task's row (``has_dependents``, as a
chained task does); the worker that records a marked task sends
``pg_notify('django_tasks_q_finished', <ids>)`` in the same transaction (see
``chains.pass_on``), so the notification arrives when, and only if, the
outcome is committed. Tasks nobody waits for cost nothing: no notification.

One listener per process and database serves every waiting thread: a thread
with its own autocommit connection that LISTENs, marks the tasks waited for
(on its own connection, so no lock is held in a caller's transaction), and
wakes the waiters whose tasks have left the queue. It runs while someone
waits, and closes its connection when no one does.

Marking is race-free: the UPDATE that marks a row waits for a worker that is
recording it at that moment, and the lookup after it sees that worker's
commit; a worker that records the row later sees the mark. Waiters look
again every ``poll_interval`` as a fallback: that is how they learn of tasks
that ended other than by a worker recording them (cancelled, expired,
deleted) and of notifications lost while the connection was down.
"""

import logging
import os
import select
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from django.db.backends.base.base import BaseDatabaseWrapper

from ...backoff import Backoff
from ..base import deadline_after, time_left
from .postgres import FINISHED_CHANNEL, PostgresStatements

if TYPE_CHECKING:
    import psycopg

logger = logging.getLogger("django_tasks_q")


class ResultListener:
    _instances: dict[str, "ResultListener"] = {}
    _instances_lock = threading.Lock()

    @classmethod
    def for_connection(cls, connection: BaseDatabaseWrapper) -> "ResultListener":
        """The process's listener for the database of ``connection`` (a Django one)."""
        with cls._instances_lock:
            if connection.alias not in cls._instances:
                cls._instances[connection.alias] = cls(connection.get_connection_params())
            return cls._instances[connection.alias]

    def __init__(self, connection_params: dict):
        self._params = {**connection_params, "autocommit": True}
        self._lock = threading.Lock()
        self._waiters: dict[str, set[threading.Event]] = defaultdict(set)  # by task id
        self._to_look_up: set[str] = set()
        self._thread: threading.Thread | None = None
        # A byte written here wakes the thread from its select().
        self._poke_in, self._poke_out = socket.socketpair()
        self._poke_in.setblocking(False)
        self._poke_out.setblocking(False)

    def wait(self, task_id: str, timeout: float | None, look_every: float) -> bool:
        """True once ``task_id`` has left the queue (finished, or gone), False
        if it has not after ``timeout`` seconds (None: no limit)."""
        deadline = deadline_after(timeout)
        event = threading.Event()
        with self._lock:
            self._waiters[task_id].add(event)
        try:
            while True:
                self._look_up(task_id)
                left = time_left(deadline)
                if event.wait(look_every if left is None else min(look_every, left)):
                    return True
                if left is not None and left <= look_every:  # that wait was the last
                    return False
        finally:
            with self._lock:
                self._waiters[task_id].discard(event)
                if not self._waiters[task_id]:
                    del self._waiters[task_id]
            self._poke()  # the thread stops once no one waits

    def _look_up(self, task_id: str) -> None:
        """Have the thread mark and look up ``task_id``, starting it if it is
        not running (the first waiter, or after it failed)."""
        with self._lock:
            self._to_look_up.add(task_id)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="taskq-result-listener", daemon=True
                )
                self._thread.start()
        self._poke()

    def _poke(self) -> None:
        try:
            self._poke_out.send(b"\0")
        except BlockingIOError:  # the buffer is full of pokes already
            pass

    def _wake(self, task_ids: Iterable[str]) -> None:
        with self._lock:
            for task_id in task_ids:
                for event in self._waiters.get(task_id, ()):
                    event.set()

    def _stop_if_idle(self) -> bool:
        """Under the lock: if no one waits, forget the thread (it is ending)."""
        if self._waiters:
            return False
        self._thread = None
        return True

    def _run(self) -> None:
        try:
            self._listen()
        except Exception:
            logger.exception("wait(): the result listener failed; the next look restarts it")
        finally:
            with self._lock:
                if self._thread is threading.current_thread():
                    self._thread = None

    def _listen(self) -> None:
        import psycopg  # here: PostgreSQL is an optional extra

        backoff = Backoff()
        while True:
            try:
                with psycopg.connect(**self._params) as connection:
                    connection.execute(f"LISTEN {FINISHED_CHANNEL}")
                    backoff.reset()
                    with self._lock:  # anything that ended while we were not listening
                        self._to_look_up.update(self._waiters)
                    while self._serve(connection):
                        select.select([connection.fileno(), self._poke_in.fileno()], [], [])
                        try:
                            while self._poke_in.recv(4096):
                                pass
                        except BlockingIOError:
                            pass
                    return
            except psycopg.Error as error:
                with self._lock:
                    if self._stop_if_idle():
                        return
                wait = backoff.next()
                logger.warning("wait(): LISTEN failed (%s); retrying in %.1f s", error, wait)
                time.sleep(wait)

    def _serve(self, connection: "psycopg.Connection[Any]") -> bool:
        """Mark and look up new tasks, pass on notifications; False once no one waits."""
        with self._lock:
            if self._stop_if_idle():
                return False
            task_ids, self._to_look_up = list(self._to_look_up), set()
        if task_ids:
            connection.execute(PostgresStatements.MARK_WAITED_FOR, [task_ids])
            queued = {
                str(row[0]) for row in connection.execute(PostgresStatements.QUEUED, [task_ids])
            }
            self._wake(task_id for task_id in task_ids if task_id not in queued)
        for notification in connection.notifies(timeout=0):
            self._wake(notification.payload.split(","))
        return True


# A forked child has none of its parent's threads: it starts its own listeners.
os.register_at_fork(after_in_child=ResultListener._instances.clear)
