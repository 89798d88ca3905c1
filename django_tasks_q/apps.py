from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class TasksQConfig(AppConfig):
    name = "django_tasks_q"
    verbose_name = _("Task queue")
    default_auto_field = "django.db.models.BigAutoField"
