"""Wake idle workers the moment a task is committed: PostgreSQL LISTEN/NOTIFY.

Enqueueing runs ``pg_notify('django_tasks_q', <queue>)`` in the enqueueing
transaction (see ``postgres.py``), so the notification is delivered when, and only
if, that transaction commits. The listener holds its own connection (LISTEN
lasts as long as the session); the loop, the back-off and what each
notification does are the shared ``Listener``'s.

Abort requests travel the same way on their own channel: an operator's abort
notifies ``django_tasks_q_abort`` with the id of the worker holding the task,
and only that worker looks.
"""

from collections.abc import Callable
from typing import Any

from ..listener import Listener, Messages
from .statements import ABORT_CHANNEL, WAKE_CHANNEL


def psycopg3_installed() -> bool:
    """Whether LISTEN can work: it needs psycopg 3, while Django also runs on psycopg2."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return False
    return True


class PostgresListener(Listener):
    connection_name = "LISTEN connection"

    def __init__(
        self,
        connection_params: dict[str, Any],
        queues: list[str] | None,
        wake: Callable[[], None],
        worker_id: str | None = None,
        on_abort: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(WAKE_CHANNEL, queues, wake, ABORT_CHANNEL, worker_id, on_abort)
        self._params = {**connection_params, "autocommit": True}

    @property
    def reconnect_errors(self) -> tuple[type[BaseException], ...]:
        import psycopg  # here: PostgreSQL is an optional extra

        return (psycopg.Error,)

    def _listen(self) -> Messages:
        import psycopg

        with psycopg.connect(**self._params) as connection:
            for channel in self.channels:
                connection.execute(f"LISTEN {channel}")
            yield None
            while True:
                for notification in connection.notifies(timeout=1.0):
                    yield notification.channel, notification.payload
                yield None
