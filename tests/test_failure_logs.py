"""What the worker logs when a task fails: the error on its line, the
traceback where the error was caught, with the task's id, path and attempt."""

import logging

from django_tasks_q.compat import task_backends
from django_tasks_q.worker.worker import Worker

from . import tasks
from .conftest import wait_until


def failures(caplog) -> list[logging.LogRecord]:
    return [record for record in caplog.records if getattr(record, "task_id", None)]


def test_a_failed_attempt_logs_its_traceback_with_the_task_as_extras(queue_db, caplog):
    retried = tasks.fail_until.using(backend=queue_db.alias).enqueue(queue_db.database, 99)
    final = tasks.boom.using(backend=queue_db.alias).enqueue()
    with caplog.at_level(logging.INFO, "django_tasks_q"):
        Worker(task_backends[queue_db.alias], burst=True, concurrency=1).run()

    by_task = {record.task_id: record for record in failures(caplog)}
    warning, error = by_task[retried.id], by_task[final.id]
    assert (warning.levelno, warning.task_path, warning.attempt) == (
        logging.WARNING,
        "tests.tasks.fail_until",
        1,
    )
    assert (error.levelno, error.task_path, error.attempt) == (
        logging.ERROR,
        "tests.tasks.boom",
        1,
    )
    for record, message in [(warning, "attempt 1 fails"), (error, "boom")]:
        assert record.exc_info and isinstance(record.exc_info[1], ValueError)
        assert str(record.exc_info[1]) == message
    # The worker's own line for each outcome names the error.
    assert (
        f"Task {retried.id} tests.tasks.fail_until failed (attempt 1), retrying in 0.2 s: "
        "ValueError: attempt 1 fails" in caplog.text
    )
    assert "(attempt 1): ValueError: boom" in caplog.text


def test_a_worker_process_prints_the_error_and_its_traceback(queue_db, start_worker):
    tasks.fail_until.using(backend=queue_db.alias).enqueue(queue_db.database, 99)
    worker = start_worker(queue_db)
    wait_until(lambda: queue_db.finished_count(), message="the task to fail")
    worker.signal()
    assert worker.wait() == 0

    output = worker.output()
    assert "failed (attempt 1), retrying in 0.2 s: ValueError: attempt 1 fails" in output
    assert "(attempt 4): ValueError: attempt 4 fails" in output
    # A traceback per attempt: three retried (WARNING), the last one final (ERROR).
    assert output.count("Traceback (most recent call last)") == 4
    assert output.count('raise ValueError(f"attempt {context.attempt} fails")') == 4
