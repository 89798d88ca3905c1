"""A store that goes away: the worker says so once per back-off step, with
one traceback, and says when it is back; enqueue() raises QueueUnavailable.

The outage is a Redis server of the test's own, shut down and started again
on the same port (PostgreSQL is shared and may not be stopped); the worker's
loop handles every store's ``transient_errors`` the same way."""

import socket
import subprocess

import pytest
import redis

from django_tasks_q.backends.redis import RedisBackend
from django_tasks_q.exceptions import QueueUnavailable

from . import tasks
from .conftest import wait_until


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class OwnRedis:
    """A redis-server on a free port, for this test alone."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        subprocess.run(
            [
                "redis-server",
                "--daemonize",
                "yes",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            check=True,
            capture_output=True,
        )
        wait_until(self._answers, timeout=30, message="redis-server to start")

    def stop(self) -> None:
        try:
            redis.Redis(port=self.port).shutdown(nosave=True)
        except redis.ConnectionError:
            pass  # it closes the connection as it goes
        wait_until(lambda: not self._answers(), timeout=30, message="redis-server to stop")

    def _answers(self) -> bool:
        try:
            return bool(redis.Redis(port=self.port, socket_connect_timeout=1).ping())
        except redis.ConnectionError:
            return False


def logged_tracebacks(output: str) -> int:
    """How many tracebacks were logged, one for each chain of exceptions."""
    chained = output.count("During handling of the above exception") + output.count(
        "The above exception was the direct cause"
    )
    return output.count("Traceback (most recent call last)") - chained


@pytest.fixture
def own_redis():
    server = OwnRedis()
    server.start()
    yield server
    server.stop()


def test_a_redis_outage_is_one_line_per_back_off_step(redis_queue_db, start_worker, own_redis):
    # A single server of its own, also when the suite runs on a cluster.
    env = {"TASKQ_REDIS_URL": own_redis.url, "TASKQ_REDIS_CLUSTER_URL": ""}
    worker = start_worker(redis_queue_db, env=env)
    wait_until(lambda: " started: " in worker.output(), message="the worker to start")
    own_redis.stop()
    steps = "The queue is unavailable"
    wait_until(lambda: worker.output().count(steps) >= 4, message="four back-off steps")
    own_redis.start()
    wait_until(lambda: "The queue reconnected after" in worker.output(), message="reconnection")
    worker.signal()
    assert worker.wait() == 0

    output = worker.output()
    assert "retrying in 0.5 s" in output and "retrying in 4.0 s" in output
    assert "ConnectionError" in output  # the reason, on each step's line
    assert logged_tracebacks(output) <= 1
    assert "Redis subscription reconnected after" in output


def test_enqueue_raises_queue_unavailable_naming_the_server(settings):
    port = free_port()  # nobody listens there
    params = {**settings.TASKS["default"], "BACKEND": "django_tasks_q.backends.redis.RedisBackend"}
    params["OPTIONS"] = {
        "url": f"redis://:secret@127.0.0.1:{port}/0",
        "enqueue_on_commit": False,
    }
    backend = RedisBackend("down", params)
    with pytest.raises(QueueUnavailable) as raised:
        backend.enqueue(tasks.add, [1, 2], {})
    message = str(raised.value)
    assert f"redis://127.0.0.1:{port}/0" in message and "secret" not in message
    assert isinstance(raised.value.__cause__, redis.ConnectionError)
