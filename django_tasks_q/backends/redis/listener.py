"""Wake idle workers the moment a task is queued: Redis pub/sub.

The functions in ``library.lua`` publish a queue's name on the wake channel
once per call that makes tasks of that queue due (enqueue, release, recover),
so ``enqueue_many`` of 10,000 tasks sends one message. Pub/sub delivers only
to whoever is subscribed at that moment; the loop, the back-off and what each
message does are the shared ``Listener``'s. On a Redis Cluster a PUBLISH
reaches the subscribers of every node, so the subscription may be on any.

Abort requests come on their own channel, as the id of the worker holding
the task: only that worker looks.
"""

from collections.abc import Callable
from typing import Any

import redis

from ..listener import Listener, Messages


class RedisListener(Listener):
    connection_name = "Redis subscription"
    reconnect_errors = (redis.ConnectionError, redis.TimeoutError)

    def __init__(
        self,
        client: Any,  # redis.Redis or redis.cluster.RedisCluster
        wake_channel: str,
        queues: list[str] | None,
        wake: Callable[[], None],
        abort_channel: str,
        worker_id: str | None = None,
        on_abort: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(wake_channel, queues, wake, abort_channel, worker_id, on_abort)
        self._client = client

    def _listen(self) -> Messages:
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(*self.channels)
            yield None
            while True:
                message = pubsub.get_message(timeout=1.0)
                yield (message["channel"], message["data"]) if message else None
        finally:
            pubsub.close()
