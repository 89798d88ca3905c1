"""The worker loop's wake-up: an Event that a signal handler may set."""

import signal
import threading

from django_tasks_q.worker.worker import Wakeup


def test_set_before_wait_returns_at_once_until_cleared():
    wake = Wakeup()
    assert wake.wait(0) is False

    wake.set()
    wake.set()
    assert wake.wait(0) is True
    assert wake.wait(0) is True  # stays set, as an Event does

    wake.clear()
    assert wake.wait(0) is False


def test_another_thread_wakes_a_wait():
    wake = Wakeup()
    timer = threading.Timer(0.05, wake.set)
    timer.start()
    try:
        assert wake.wait(60) is True
    finally:
        timer.cancel()


def test_a_signal_handler_wakes_the_wait_it_interrupts():
    # The handler runs in the waiting thread, in the middle of wait(): with
    # threading.Event its set() could block on the lock wait() holds, forever.
    wake = Wakeup()
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: wake.set())
    try:
        for _ in range(20):
            wake.clear()
            signal.setitimer(signal.ITIMER_REAL, 0.01)
            assert wake.wait(60) is True
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
