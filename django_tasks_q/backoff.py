"""How long to wait before trying an unavailable server again.

Shared by everything that keeps a connection up in the background: the
worker loop (its store), and the listeners that LISTEN or SUBSCRIBE for it.
"""

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
