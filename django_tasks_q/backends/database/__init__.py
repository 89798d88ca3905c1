"""The queue in the project's own database: PostgreSQL, or SQLite with no server.

backend.py          DatabaseBackend: the django.tasks API and the worker's store
statements.py       every statement of the hot paths, per vendor: claim, finish, ...
chains.py           after(): blocked tasks made ready or cancelled as their parents end
operations.py       what operators do to the tables: retry, cancel, abort, purge, prune
figures.py          how the queue is doing, for the dashboard, taskq and the metrics
listeners.py        LISTEN/NOTIFY wake-ups on PostgreSQL
result_listener.py  wait() on PostgreSQL, woken by NOTIFY
"""

from .backend import DatabaseBackend

__all__ = ["DatabaseBackend"]
