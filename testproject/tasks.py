"""The demo's tasks: one of each kind a site has."""

import asyncio
import time

from django_tasks_q import Retry, task

# Django's own @task: django.tasks.task (django_tasks.task on Django 5.2).
from django_tasks_q.compat import task as django_task


@django_task
def add(a: int, b: int) -> int:
    """A plain Django task: no django-tasks-q import needed."""
    return a + b


@task(queue_name="emails", max_retries=3, retry_backoff=0.5)
def send_welcome_email(address: str) -> str:
    if "@" not in address:
        raise ValueError(f"{address!r} is not an email address")
    return f"sent to {address}"


@task(takes_context=True, max_retries=2)
def flaky(context, succeed_on_attempt: int = 2) -> str:
    """Fails until the given attempt, to show retries in action."""
    if context.attempt < succeed_on_attempt:
        raise Retry(delay=1, reason=f"attempt {context.attempt}: not yet")
    return f"succeeded on attempt {context.attempt}"


@task
def slow(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@task
async def fetch_async(delay: float) -> str:
    await asyncio.sleep(delay)
    return "async done"
