"""Wake idle workers the moment tasks arrive: the part every store's listener shares.

A listener holds its own connection in its own thread and only calls
``wake()`` (the worker's loop does the claiming) when a queue it serves gets
tasks, and ``on_abort()`` when someone asks to abort a task its worker holds.
Polling stays as the fallback, so a lost message costs at most one poll
interval. Each store says how to connect and subscribe (``_listen``) and
which errors mean "connect again" (``reconnect_errors``); this base runs the
loop: back off on those errors, and on each (re)connection look at once, for
whatever was sent while nobody listened.
"""

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator
from typing import ClassVar, Self

from ..backoff import Outage

logger = logging.getLogger("django_tasks_q.worker")

# What a store's listener yields: None once subscribed, then a message as
# (channel, payload), or None when a second or so passed without one.
type Messages = Generator[tuple[str, str] | None]


class Listener(ABC):
    """Dispatches each message: on the abort channel, the id of the worker
    holding the task; on the wake channel, a queue name."""

    # What the log calls the connection, e.g. "LISTEN connection".
    connection_name: ClassVar[str]

    def __init__(
        self,
        wake_channel: str,
        queues: list[str] | None,
        wake: Callable[[], None],
        abort_channel: str,
        worker_id: str | None = None,
        on_abort: Callable[[], None] | None = None,
    ) -> None:
        self._wake_channel = wake_channel
        self._queues = set(queues) if queues else None
        self._wake = wake
        self._abort_channel = abort_channel
        self._worker_id = worker_id
        self._on_abort = on_abort
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="taskq-listener", daemon=True)

    @property
    def channels(self) -> list[str]:
        """The channels to subscribe to: abort requests only if someone asks."""
        return [self._wake_channel, *([self._abort_channel] if self._on_abort else [])]

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)

    @property
    @abstractmethod
    def reconnect_errors(self) -> tuple[type[BaseException], ...]:
        """The errors after which the listener connects again."""

    @abstractmethod
    def _listen(self) -> Messages:
        """Connect and subscribe to ``channels``, yield None once subscribed,
        then each message as (channel, payload), or None every second or so
        when there is none (so that stop() is noticed)."""

    def _run(self) -> None:
        # Its errors are connection errors, whose message says it all: the
        # traceback only at DEBUG (the worker's loop logs the store's first).
        outage = Outage(f"The {self.connection_name}", logger, first_traceback=False)
        while not self._stopped.is_set():
            try:
                self._receive(outage)
            except self.reconnect_errors as error:
                self._stopped.wait(outage.failed(error))

    def _receive(self, outage: Outage) -> None:
        messages = self._listen()
        try:
            next(messages)  # subscribed
            outage.reached()
            # Anything sent while we were not listening: look now.
            self._wake()
            if self._on_abort:
                self._on_abort()
            for message in messages:
                if self._stopped.is_set():
                    return
                if message:
                    self._dispatch(*message)
        finally:
            messages.close()

    def _dispatch(self, channel: str, payload: str) -> None:
        if channel == self._abort_channel:
            if self._on_abort and payload == self._worker_id:
                self._on_abort()
        elif self._queues is None or payload in self._queues:
            self._wake()
