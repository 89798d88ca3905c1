"""What only the Redis backend has: enqueue on commit, result TTLs, the
database copy of results, its functions library, its checks. Its queue
behaviour is tested with every other backend's, in the parametrised suites."""

import pytest
from django.conf import settings
from django.db import transaction

from django_tasks_q.backends.redis import RedisBackend
from django_tasks_q.backends.redis import backend as redis_backend
from django_tasks_q.backends.redis.library import LIBRARY
from django_tasks_q.compat import TaskResultDoesNotExist, TaskResultStatus
from django_tasks_q.models import TaskResult
from django_tasks_q.worker.worker import Worker

from . import tasks
from .conftest import wait_until


def backend_with(**options) -> RedisBackend:
    """The tests' Redis backend (server or cluster, and this test process's
    key prefix) with other OPTIONS."""
    options = {
        "url": settings.REDIS_URL,
        "cluster": settings.REDIS_CLUSTER,
        "prefix": f"taskq{settings.XDIST_WORKER}",
        "poll_interval": 0.05,
        **options,
    }
    return RedisBackend("redis", {"QUEUES": ["default"], "OPTIONS": options})


def test_enqueue_in_a_transaction_is_sent_on_commit(redis_queue_db):
    backend = redis_queue_db.queue_backend
    with transaction.atomic(using=redis_queue_db.database):
        result = tasks.add.using(backend="redis").enqueue(1, 2)
        assert result.status == TaskResultStatus.READY
        # Not in Redis yet: a worker must not see it before the commit.
        assert redis_queue_db.queued_count() == 0
        with pytest.raises(TaskResultDoesNotExist):
            backend.get_result(result.id)
    assert backend.get_result(result.id).status == TaskResultStatus.READY


def test_enqueue_in_a_rolled_back_transaction_is_never_sent(redis_queue_db):
    sent = []
    with pytest.raises(RuntimeError), transaction.atomic(using=redis_queue_db.database):
        sent += tasks.add.using(backend="redis").enqueue_many([(1, 2), (3, 4)])
        raise RuntimeError("the view failed")
    assert redis_queue_db.queued_count() == 0
    with pytest.raises(TaskResultDoesNotExist):
        redis_queue_db.queue_backend.get_result(sent[0].id)


def test_enqueue_on_commit_off_sends_at_once(redis_queue_db):
    backend = backend_with(enqueue_on_commit=False)
    with pytest.raises(RuntimeError), transaction.atomic(using=redis_queue_db.database):
        result = backend.enqueue(tasks.add, (1, 2), {})
        raise RuntimeError("rolled back, but the task was already sent")
    assert backend.get_result(result.id).status == TaskResultStatus.READY


def test_results_expire_after_result_ttl(redis_queue_db):
    backend = backend_with(result_ttl=123)
    waiting = backend.enqueue(tasks.add, (1, 2), {})
    Worker(backend, burst=True).run()
    assert backend.get_result(waiting.id).return_value == 3
    key = backend.key("task", waiting.id)
    assert 0 < redis_queue_db.client.ttl(key) <= 123
    # Nothing but results is left behind once a queue has drained.
    assert redis_queue_db.client.zcard(backend.key("running")) == 0


def test_results_can_be_copied_to_the_database(redis_queue_db):
    backend = backend_with(record_results_in_database=True)
    ok = backend.enqueue(tasks.add, (2, 3), {})
    bad = backend.enqueue(tasks.unserialisable_return, (), {})
    Worker(backend, burst=True).run()

    rows = {str(r.id): r for r in TaskResult.objects.using(redis_queue_db.database)}
    assert rows.keys() == {ok.id, bad.id}
    assert (rows[ok.id].status, rows[ok.id].return_value, rows[ok.id].attempts) == (
        "SUCCESSFUL",
        5,
        1,
    )
    assert rows[ok.id].finished_at == backend.get_result(ok.id).finished_at
    assert rows[bad.id].status == "FAILED" and "not JSON" in rows[bad.id].errors[0]["traceback"]
    assert redis_queue_db.client.llen(backend.key("outbox")) == 0


def test_functions_are_loaded_again_if_the_server_forgot_them(redis_queue_db):
    """A restart without persistence drops the library: the next call reloads it."""
    backend = redis_queue_db.queue_backend
    backend.enqueue(tasks.add, (1, 1), {})
    redis_queue_db.client.function_delete(LIBRARY)
    result = backend.enqueue(tasks.add, (2, 2), {})
    assert backend.get_result(result.id).status == TaskResultStatus.READY


def primaries(backend: RedisBackend) -> list:
    """A client of each primary: the cluster's, or the one server."""
    client = backend.client
    if not backend.cluster:
        return [client]
    return [client.get_redis_connection(node) for node in client.get_primaries()]


def test_functions_are_loaded_on_every_primary(redis_queue_db):
    """A cluster's every primary holds some slots, so each needs the library."""
    backend = redis_queue_db.queue_backend
    backend.functions.load()
    for server in primaries(backend):
        # Each library as a flat list: "library_name", its name, "engine", ...
        libraries = server.function_list(LIBRARY)
        assert [entry[entry.index("library_name") + 1] for entry in libraries] == [LIBRARY]


def test_wake_ups_reach_subscribers_on_every_node(redis_queue_db):
    """A listener may be subscribed on any node of a cluster: the functions'
    PUBLISH (classic pub/sub) reaches them all."""
    backend = redis_queue_db.queue_backend
    subscriptions = [server.pubsub() for server in primaries(backend)]

    def next_message(subscription):
        return wait_until(lambda: subscription.get_message(timeout=0.1), message="a message")

    for subscription in subscriptions:
        subscription.subscribe(backend.key("wake"))
        assert next_message(subscription)["type"] == "subscribe"
    backend.enqueue(tasks.add, (1, 2), {})
    for subscription in subscriptions:
        assert next_message(subscription)["data"] == "default"
        subscription.close()


def test_system_checks(monkeypatch):
    assert backend_with().check() == []
    errors = backend_with(url="http://nope", result_ttl=0, database="missing").check()
    assert [e.id for e in errors] == [
        "django_tasks_q.E002",
        "django_tasks_q.E007",
        "django_tasks_q.E008",
    ]
    monkeypatch.setattr(redis_backend, "REDIS_INSTALLED", False)
    assert [e.id for e in backend_with().check()] == ["django_tasks_q.E006"]
