"""Django's task signals, from a worker running in this process."""

from django_tasks_q.compat import TaskResultStatus, task_backends, task_finished, task_started
from django_tasks_q.worker.worker import Worker

from . import tasks


def test_started_and_finished_signals(queue_db):
    seen = []

    def on_started(sender, task_result, **kwargs):
        seen.append(("started", task_result.id, task_result.status))

    def on_finished(sender, task_result, **kwargs):
        seen.append(("finished", task_result.id, task_result.status))

    ok = tasks.add.using(backend=queue_db.alias).enqueue(1, 2)
    task_started.connect(on_started)
    task_finished.connect(on_finished)
    try:
        Worker(task_backends[queue_db.alias], burst=True, concurrency=1).run()
    finally:
        task_started.disconnect(on_started)
        task_finished.disconnect(on_finished)

    assert seen == [
        ("started", ok.id, TaskResultStatus.RUNNING),
        ("finished", ok.id, TaskResultStatus.SUCCESSFUL),
    ]


def test_finished_signal_sees_the_recorded_result(queue_db):
    """task_finished is sent once the outcome is stored, so receivers can read it."""
    fetched = []

    def on_finished(sender, task_result, **kwargs):
        fetched.append(task_backends[queue_db.alias].get_result(task_result.id))

    failing = tasks.unserialisable_return.using(backend=queue_db.alias).enqueue()
    task_finished.connect(on_finished)
    try:
        Worker(task_backends[queue_db.alias], burst=True).run()
    finally:
        task_finished.disconnect(on_finished)

    assert [r.id for r in fetched] == [failing.id]
    assert fetched[0].status == TaskResultStatus.FAILED and fetched[0].finished_at


def test_finished_is_sent_with_the_started_result_ended(queue_db):
    """One result object per attempt run in the worker's process: task_started's,
    ended in place for task_finished (as refresh() would), with the row's task."""
    started, finished = [], []

    def on_started(sender, task_result, **kwargs):
        started.append(task_result)

    def on_finished(sender, task_result, **kwargs):
        finished.append(task_result)

    ok = tasks.add.using(backend=queue_db.alias, priority=7).enqueue(1, 2)
    task_started.connect(on_started)
    task_finished.connect(on_finished)
    try:
        Worker(task_backends[queue_db.alias], burst=True, concurrency=1).run()
    finally:
        task_started.disconnect(on_started)
        task_finished.disconnect(on_finished)

    assert len(started) == len(finished) == 1
    assert finished[0] is started[0]
    assert finished[0].id == ok.id and finished[0].status == TaskResultStatus.SUCCESSFUL
    assert finished[0].return_value == 3 and finished[0].finished_at is not None
    assert finished[0].task.priority == 7  # the row's, set with using()
