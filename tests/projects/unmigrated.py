"""Settings of a project that installed the app but never ran ``migrate``: its
database (the URL in TASKQ_SCRATCH_DATABASE, made empty by the test) has no tables."""

import os

import dj_database_url

SECRET_KEY = "test"
INSTALLED_APPS = ["django.contrib.contenttypes", "django_tasks_q", "tests.projects.shop"]
DATABASES = {"default": dj_database_url.parse(os.environ["TASKQ_SCRATCH_DATABASE"])}
TASKS = {"default": {"BACKEND": "django_tasks_q.backends.database.DatabaseBackend"}}
if redis_url := os.environ.get("TASKQ_SCRATCH_REDIS"):
    for alias, copies in [("redis", False), ("redis_with_results", True)]:
        TASKS[alias] = {
            "BACKEND": "django_tasks_q.backends.redis.RedisBackend",
            "OPTIONS": {
                "url": redis_url,
                "prefix": "taskq-unmigrated",
                "record_results_in_database": copies,
            },
        }
USE_TZ = True
