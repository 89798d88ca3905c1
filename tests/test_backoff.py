"""The wait between attempts to reach an unavailable server."""

import logging

from django_tasks_q.backoff import Backoff, Outage


def test_waits_double_up_to_the_most_and_start_over_after_a_success():
    backoff = Backoff()
    assert [backoff.next() for _ in range(8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]

    backoff.reset()
    assert backoff.next() == 0.5


def test_an_outage_logs_a_line_per_step_one_traceback_and_its_end(caplog):
    outage = Outage("The queue", logging.getLogger("django_tasks_q.worker"))
    with caplog.at_level(logging.INFO, "django_tasks_q"):
        outage.noted(ConnectionError("refused"), "Heartbeat")  # starts it: in full
        waits = [outage.failed(ConnectionError("refused")) for _ in range(3)]
        outage.noted(ConnectionError("refused"), "Heartbeat")  # during it: DEBUG only
        outage.reached()
        outage.reached()  # no outage: nothing to say

    assert waits == [0.5, 1.0, 2.0]
    lines = [(r.levelname, r.getMessage(), bool(r.exc_info)) for r in caplog.records]
    assert lines[:4] == [
        ("WARNING", "Heartbeat failed: ConnectionError: refused", True),
        (
            "WARNING",
            "The queue is unavailable (ConnectionError: refused); retrying in 0.5 s",
            False,
        ),
        (
            "WARNING",
            "The queue is unavailable (ConnectionError: refused); retrying in 1.0 s",
            False,
        ),
        (
            "WARNING",
            "The queue is unavailable (ConnectionError: refused); retrying in 2.0 s",
            False,
        ),
    ]
    [(level, message, _)] = lines[4:]
    assert level == "INFO" and message.startswith("The queue reconnected after ")
    # Back to the first step for the next outage.
    assert outage.failed(ConnectionError("refused")) == 0.5
