"""django-tasks-db on PostgreSQL (database bench_djtasksdb, see common.database_name)."""

from bench.drivers.common import PG_HOST, PG_PORT, PG_USER, database_name

SECRET_KEY = "bench"
USE_TZ = True
INSTALLED_APPS = ["django_tasks_db", "bench.sites.djtasksdb"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": database_name("djtasksdb"),
        "HOST": PG_HOST,
        "PORT": PG_PORT,
        "USER": PG_USER,
        # Persistent connections, as a production worker would have them: with
        # Django's default (0), db_worker reconnects for every task.
        "CONN_MAX_AGE": None,
    }
}
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}}
