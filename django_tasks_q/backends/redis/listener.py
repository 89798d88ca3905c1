"""Wake idle workers the moment a task is queued: Redis pub/sub.

The functions in ``redis.lua`` publish a queue's name on the wake channel
once per call that makes tasks of that queue due (enqueue, release, recover),
so ``enqueue_many`` of 10,000 tasks sends one message. The listener holds its
own connection and only sets an event: the worker's loop does the claiming.
Polling stays as the fallback, so a lost message costs at most one poll
interval (pub/sub delivers only to whoever is subscribed at that moment).

Abort requests come on their own channel, as the id of the worker holding
the task: only that worker looks.
"""

import logging
import threading
from collections.abc import Callable

import redis

from ...backoff import Backoff

logger = logging.getLogger("django_tasks_q.worker")


class RedisListener:
    def __init__(
        self,
        client: redis.Redis,
        channel: str,
        queues: list[str] | None,
        wake: Callable[[], None],
        abort_channel: str | None = None,
        worker_id: str | None = None,
        on_abort: Callable[[], None] | None = None,
    ):
        self._client = client
        self._channel = channel
        self._queues = set(queues) if queues else None
        self._wake = wake
        # on_abort() when worker_id is published on abort_channel.
        self._abort_channel = abort_channel if on_abort else None
        self._worker_id = worker_id
        self._abort = on_abort
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="taskq-listener", daemon=True)

    def start(self) -> "RedisListener":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        backoff = Backoff()
        while not self._stopped.is_set():
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(*filter(None, (self._channel, self._abort_channel)))
                backoff.reset()
                # Anything published while we were not subscribed: look now.
                self._wake()
                if self._abort:
                    self._abort()
                while not self._stopped.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if not message:
                        continue
                    if message["channel"] == self._abort_channel:
                        if message["data"] == self._worker_id:
                            self._abort()
                    elif self._queues is None or message["data"] in self._queues:
                        self._wake()
            except (redis.ConnectionError, redis.TimeoutError) as error:
                wait = backoff.next()
                logger.warning("Redis subscription failed (%s); retrying in %.1f s", error, wait)
                self._stopped.wait(wait)
            finally:
                pubsub.close()
