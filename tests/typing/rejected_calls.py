"""Checked by mypy (``tests/test_typing.py``), never run: mypy must reject
this file, with exactly the error written in the ``# E:`` comment above each
call (message and code), and no other.

``enqueue_many`` is not here: its calls are typed ``Iterable[Any]`` (tuples,
dicts or ``Call``\\s), so mypy cannot check them against the function.
"""

import django.tasks

from django_tasks_q import QTaskContext, task


@task
def send_receipt(order_id: int) -> str:
    return str(order_id)


@task(max_retries=3, queue_name="emails")
def notify(user_id: int, *, urgent: bool = False) -> None: ...


@task(takes_context=True)
def fetch(context: QTaskContext, url: str) -> int:
    return len(url)


@django.tasks.task  # Django's own decorator: the tasks our backends run
def add(a: int, b: int) -> int:
    return a + b


# E: Argument 1 to "enqueue" of "QTask" has incompatible type "str"; expected "int"  [arg-type]
send_receipt.enqueue("42")
# E: Missing positional argument "order_id" in call to "enqueue" of "QTask"  [call-arg]
send_receipt.enqueue()
# E: Too many arguments for "enqueue" of "QTask"  [call-arg]
send_receipt.enqueue(42, 43)
# E: Argument "urgent" to "enqueue" of "QTask" has incompatible type "str"; expected "bool"  [arg-type]
notify.enqueue(7, urgent="yes")
# E: Unexpected keyword argument "loud" for "enqueue" of "QTask"  [call-arg]
notify.enqueue(7, loud=True)
# E: Argument 1 to "enqueue" of "QTask" has incompatible type "str"; expected "int"  [arg-type]
notify.using(priority=10, run_after=30).enqueue("7")
# E: Argument "priority" to "using" of "QTask" has incompatible type "str"; expected "int | None"  [arg-type]
notify.using(priority="high")
# E: Argument 1 to "call" of "QTask" has incompatible type "str"; expected "int"  [arg-type]
send_receipt.call("42")
# E: Argument 1 to "enqueue" of "QTask" has incompatible type "int"; expected "str"  [arg-type]
fetch.enqueue(3)
# E: Argument 1 to "enqueue" of "Task" has incompatible type "str"; expected "int"  [arg-type]
add.enqueue("2", 3)
# E: Missing positional argument "b" in call to "enqueue" of "Task"  [call-arg]
add.using(priority=5).enqueue(2)
# E: Incompatible types in assignment (expression has type "str", variable has type "int")  [assignment]
result: int = send_receipt.call(42)


async def later() -> int:
    # E: Argument 1 to "aenqueue" of "QTask" has incompatible type "str"; expected "int"  [arg-type]
    await send_receipt.aenqueue("42")
    # E: Incompatible return value type (got "str", expected "int")  [return-value]
    return await send_receipt.acall(42)
