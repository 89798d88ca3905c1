"""How long to wait before trying an unavailable server again, and what the
log says meanwhile.

Shared by everything that keeps a connection up in the background: the
worker loop (its store), and the listeners that LISTEN or SUBSCRIBE for it.
"""

import logging
import time

from .payloads import error_line

FIRST = 0.5  # seconds before the first retry
MOST = 30.0  # seconds between retries at most


class Backoff:
    """Waits that double from FIRST up to MOST while failures go on."""

    def __init__(self) -> None:
        self._seconds = 0.0

    def next(self) -> float:
        """The wait before the next attempt, after one more failure."""
        self._seconds = min(max(self._seconds * 2, FIRST), MOST)
        return self._seconds

    def reset(self) -> None:
        """The server answered: the next failure starts from FIRST again."""
        self._seconds = 0.0


class Outage:
    """Backs off while a server is unavailable, and tells the log so without
    drowning it: one line per back-off step with the reason, the traceback
    only with the first (and at DEBUG), and a line once the server answers again.

    ``name`` starts the lines: "The queue", "Redis subscription".
    """

    def __init__(self, name: str, logger: logging.Logger, first_traceback: bool = True) -> None:
        self.name = name
        self._logger = logger
        self._first_traceback = first_traceback
        self._backoff = Backoff()
        self._since: float | None = None  # time.monotonic() of its first failure

    def noted(self, error: BaseException, doing: str) -> None:
        """A failure on the way (``doing``: what failed), not a back-off step:
        told in full if it starts the outage, else only at DEBUG."""
        if self._start():
            self._logger.warning(
                "%s failed: %s", doing, error_line(error), exc_info=self._traceback(error, True)
            )
        else:
            self._logger.debug("%s failed: %s", doing, error_line(error), exc_info=error)

    def failed(self, error: BaseException) -> float:
        """One more back-off step: logs it, and returns the seconds to wait."""
        first = self._start()
        wait = self._backoff.next()
        self._logger.warning(
            "%s is unavailable (%s); retrying in %.1f s",
            self.name,
            error_line(error),
            wait,
            exc_info=self._traceback(error, first),
        )
        return wait

    def reached(self) -> None:
        """The server answered: say so if it had not, and back off from the start next time."""
        self._backoff.reset()
        if self._since is not None:
            self._logger.info(
                "%s reconnected after %.1f s", self.name, time.monotonic() - self._since
            )
            self._since = None

    def _start(self) -> bool:
        """Whether this failure starts the outage."""
        if self._since is not None:
            return False
        self._since = time.monotonic()
        return True

    def _traceback(self, error: BaseException, first: bool) -> BaseException | None:
        if (first and self._first_traceback) or self._logger.isEnabledFor(logging.DEBUG):
            return error
        return None
