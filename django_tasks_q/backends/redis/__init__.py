"""The queue in Redis, for throughput: same tasks, same worker, no SQL on the hot path.

backend.py   RedisBackend: the django.tasks API, the worker's store, the figures
library.lua  every operation that must be atomic, as one library of Redis functions
library.py   loads that library, and calls each of its functions with typed arguments
listener.py  pub/sub wake-ups for idle workers, and abort requests
"""

from .backend import RedisBackend

__all__ = ["RedisBackend"]
