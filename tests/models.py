from django.db import models


class Execution(models.Model):
    """A row per run of a test task, written by the task itself."""

    label = models.CharField(max_length=100)
    task_id = models.CharField(max_length=64, blank=True)
    attempt = models.PositiveIntegerField(default=0)
    at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return f"{self.label} ({self.task_id})"
