"""Settings of a project that configures the queue but forgot to install the app."""

SECRET_KEY = "test"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "tests.projects.shop"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
TASKS = {
    "default": {"BACKEND": "django_tasks_q.backends.database.DatabaseBackend"},
    "fast": {"BACKEND": "django_tasks_q.backends.redis.RedisBackend"},
}
USE_TZ = True
