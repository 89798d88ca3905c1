"""The worker process: ``worker.py`` is the loop; ``threads.py``,
``processes.py`` and ``asyncio_loop.py`` the executors; ``execution.py`` one
attempt at one task."""
