"""The benchmark's site for django-tasks-q: the queue in PostgreSQL or SQLite."""
