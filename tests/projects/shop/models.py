# Models that enqueue (from save() or a signal) import their tasks: that is
# what loads django.tasks, and with it the tasks' system checks, at setup.
from .tasks import send_receipt  # noqa: F401
