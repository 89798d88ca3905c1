"""A store that goes away: the worker says so once per back-off step, with
one traceback, and says when it is back; enqueue() raises QueueUnavailable.

The outage is a Redis server of the test's own, shut down and started again
on the same port; PostgreSQL is shared and may not be stopped, so there the
worker reaches it through a TCP proxy of the test's own, which drops every
connection and refuses new ones, then comes back."""

import logging
import re
import socket
import subprocess
import threading

import pytest
import redis
from django.db import connections

from django_tasks_q import backoff
from django_tasks_q.backends.redis import RedisBackend
from django_tasks_q.compat import task_backends
from django_tasks_q.exceptions import QueueUnavailable
from django_tasks_q.worker.worker import Worker

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


class TcpProxy:
    """Forwards a port of its own to a server; ``stop()`` is the outage."""

    def __init__(self, host: str, port: int) -> None:
        self.port = free_port()
        self._target = (host, port)
        self._listener: socket.socket | None = None
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        """Drop every connection, and refuse new ones until ``start()``."""
        assert self._listener is not None
        with self._lock:
            doomed, self._sockets = {self._listener, *self._sockets}, set()
        for sock in doomed:
            _close(sock)
        self._listener = None

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # stop() closed it
                return
            try:
                server = socket.create_connection(self._target)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._sockets |= {client, server}
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    for sock in (source, sink):
        _close(sock)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in accept() or recv()
    except OSError:
        pass
    sock.close()


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


@pytest.mark.own_redis_server  # no cluster in it: the cluster leg would run it again for nothing
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


def test_a_postgres_outage_is_one_line_per_back_off_step(postgres_queue_db, start_worker):
    queue_db = postgres_queue_db
    database = connections[queue_db.database].settings_dict
    proxy = TcpProxy(database["HOST"] or "127.0.0.1", int(database["PORT"] or 5432))
    proxy.start()
    # The worker's settings read the URL; its database name comes from the test run.
    url = f"postgres://{database['USER']}@127.0.0.1:{proxy.port}/{database['NAME']}"
    worker = start_worker(queue_db, env={"TASKQ_POSTGRES_URL": url})
    backend = task_backends[queue_db.alias]

    def finished(result):
        return lambda: backend.get_result(result.id).is_finished

    before = tasks.add.using(backend=queue_db.alias).enqueue(1, 1)
    wait_until(finished(before), message="the worker to run a task through the proxy")
    proxy.stop()
    steps = "The queue is unavailable"
    wait_until(lambda: worker.output().count(steps) >= 4, message="four back-off steps")
    during = tasks.add.using(backend=queue_db.alias).enqueue(2, 2)
    proxy.start()
    wait_until(lambda: "The queue reconnected after" in worker.output(), message="reconnection")
    after = tasks.add.using(backend=queue_db.alias).enqueue(3, 3)
    for result in (during, after):
        wait_until(finished(result), message="the tasks enqueued during and after the outage")
    worker.signal()
    assert worker.wait() == 0
    proxy.stop()

    output = worker.output()
    assert "retrying in 0.5 s" in output and "retrying in 4.0 s" in output
    lines = [line for line in output.splitlines() if steps in line]
    # The reason, on each step's one line (psycopg's own message spans three).
    assert all("OperationalError" in line for line in lines)
    assert all(re.search(r"; retrying in [\d.]+ s$", line) for line in lines)
    assert logged_tracebacks(output) <= 1
    assert "The LISTEN connection reconnected after" in output
    assert [backend.get_result(r.id).return_value for r in (during, after)] == [4, 6]


def test_a_worker_started_before_postgres_answers_waits_for_it(postgres_queue_db, start_worker):
    # As Compose and Kubernetes start it: the database is not up yet.
    queue_db = postgres_queue_db
    database = connections[queue_db.database].settings_dict
    proxy = TcpProxy(database["HOST"] or "127.0.0.1", int(database["PORT"] or 5432))
    url = f"postgres://{database['USER']}@127.0.0.1:{proxy.port}/{database['NAME']}"
    worker = start_worker(queue_db, env={"TASKQ_POSTGRES_URL": url})
    steps = f"Database {queue_db.database!r} is unavailable"
    wait_until(lambda: worker.output().count(steps) >= 3, message="three back-off steps")
    proxy.start()
    wait_until(lambda: " started: " in worker.output(), message="the worker to start")
    result = tasks.add.using(backend=queue_db.alias).enqueue(2, 3)
    backend = task_backends[queue_db.alias]
    wait_until(lambda: backend.get_result(result.id).is_finished, message="the task to run")
    worker.signal()
    assert worker.wait() == 0
    proxy.stop()

    output = worker.output()
    lines = [line for line in output.splitlines() if steps in line]
    assert all(re.search(r"OperationalError.*; retrying in [\d.]+ s$", line) for line in lines)
    assert f"Database {queue_db.database!r} reconnected after" in output
    assert logged_tracebacks(output) == 0
    assert backend.get_result(result.id).return_value == 5


def test_a_stop_cuts_a_back_off_step_short(monkeypatch, settings, caplog):
    # Every step 10 minutes long: only a stop that ends the wait lets the worker go.
    monkeypatch.setattr(backoff, "FIRST", 600.0)
    monkeypatch.setattr(backoff, "MOST", 600.0)
    params = {**settings.TASKS["default"], "BACKEND": "django_tasks_q.backends.redis.RedisBackend"}
    params["OPTIONS"] = {"url": f"redis://127.0.0.1:{free_port()}/0"}  # nobody listens there
    worker = Worker(RedisBackend("down", params), concurrency=1)
    caplog.set_level(logging.INFO, logger="django_tasks_q")
    running = threading.Thread(target=worker.run, daemon=True)
    running.start()
    wait_until(lambda: "retrying in 600.0 s" in caplog.text, message="a back-off step")
    worker.stop()
    running.join(timeout=60)  # catches a hang only: the step would last 600 s
    assert not running.is_alive()
    assert f"Worker {worker.worker_id} stopped" in caplog.text
