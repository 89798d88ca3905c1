"""Checked by mypy (``tests/test_typing.py``), never run: ``@task`` keeps the
function's parameters, so mypy rejects a call the function would not take.

Each ``# type: ignore[...]`` marks a call that must be rejected: mypy's
``warn_unused_ignores`` fails this file if one of them is ever accepted.
"""

from typing import assert_type

from django.tasks import TaskContext

from django_tasks_q import GroupProgress, GroupResult, QTaskContext, QTaskResult, task


@task
def greet(name: str, times: int = 1) -> str:
    return name * times


@task(max_retries=3, queue_name="emails")
def send_receipt(order_id: int) -> None: ...


@task(takes_context=True)
def fetch(context: QTaskContext, url: str) -> int:
    return len(url)


@task(takes_context=True, timeout=30)
def plain_context(context: TaskContext, page: int) -> None: ...  # Django's context is fine too


assert_type(greet.enqueue("Ada", times=2), QTaskResult)
assert_type(greet.call("Ada"), str)
greet.enqueue(1)  # type: ignore[arg-type]
greet.enqueue("Ada", "twice")  # type: ignore[arg-type]

send_receipt.enqueue(42)
send_receipt.enqueue("42")  # type: ignore[arg-type]
send_receipt.using(priority=10, run_after=30).enqueue(42)
send_receipt.using(priority=10).enqueue()  # type: ignore[call-arg]

fetch.enqueue("https://example.com")  # the context is the worker's to give
assert_type(fetch.call("https://example.com"), int)
fetch.enqueue(context=None, url="https://example.com")  # type: ignore[call-arg]
plain_context.enqueue(3)
plain_context.enqueue("3")  # type: ignore[arg-type]


# after() gives the first argument: the parents' value, or the failed parent's id.
@task
def parse(page: str, url: str) -> int:
    return len(page)


parse.after(greet.enqueue("Ada")).enqueue("https://example.com")
parse.after(greet.enqueue("Ada")).enqueue("<html>", "https://example.com")  # type: ignore[call-arg]


@task
def report(failed_id: str) -> None: ...


report.after(greet.enqueue("Ada"), on="failure").enqueue()
report.after(greet.enqueue("Ada"), on="failure").enqueue("id")  # type: ignore[call-arg]


# A group: its result, and a task after it (its first argument: the list of values).
@task
def total(values: list[int]) -> int:
    return sum(values)


group = send_receipt.enqueue_group([(1,), (2,)])
assert_type(group, GroupResult)
assert_type(group.progress(), GroupProgress)
assert_type(group.wait(timeout=5), GroupResult)
assert_type(group.cancel(), int)
assert_type(group.results(), list[QTaskResult])
total.after(group).enqueue()
total.after(group).enqueue([1])  # type: ignore[call-arg]
