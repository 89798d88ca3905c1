"""The wait between attempts to reach an unavailable server."""

from django_tasks_q.backoff import Backoff


def test_waits_double_up_to_the_most_and_start_over_after_a_success():
    backoff = Backoff()
    assert [backoff.next() for _ in range(8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]

    backoff.reset()
    assert backoff.next() == 0.5
