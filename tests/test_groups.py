"""Groups: many calls enqueued as one (``QTask.enqueue_group``), with real workers."""

from datetime import timedelta

import pytest
from django.db import connections
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from django_tasks_q import GroupProgress, GroupResult
from django_tasks_q.backends.database import chains, operations
from django_tasks_q.compat import InvalidTask, TaskResultDoesNotExist, TaskResultStatus
from django_tasks_q.models import Task, TaskDependency, TaskResult

from . import tasks
from .conftest import wait_until

pytestmark = pytest.mark.database_only


def on(backend, task):
    return task.using(backend=backend.alias)


def stored(backend, result) -> TaskResult:
    return TaskResult.objects.using(backend.database).get(pk=result.id)


def error_of(backend, result) -> tuple[str, str]:
    error = stored(backend, result).errors[-1]
    return error["exception_class_path"], error["traceback"]


def test_a_group_of_a_thousand_runs_and_fans_in_with_its_values_in_order(queue_db, start_worker):
    connection = connections[queue_db.database]
    with CaptureQueriesContext(connection) as queries:
        group = on(queue_db, tasks.add).enqueue_group([(i, i) for i in range(1000)])
    # The group's row and one INSERT for every call, in a transaction.
    writes = [q["sql"] for q in queries if "INSERT INTO" in q["sql"]]
    assert len(writes) == 2, writes
    assert len(queries) == 4, [q["sql"][:60] for q in queries]  # with BEGIN and COMMIT

    summary = on(queue_db, tasks.echo).after(group).enqueue("total")
    fallback = on(queue_db, tasks.echo).after(group, on="failure").enqueue()
    # One dependency per waiting task, not one per member.
    assert TaskDependency.objects.using(queue_db.database).count() == 2
    assert group.progress() == GroupProgress(total=1000, waiting=1000)

    # Two workers record members, perhaps the last two at once: the summary
    # is still resolved, once.
    workers = [start_worker(queue_db, "--burst", "--concurrency", "4") for _ in range(2)]
    for worker in workers:
        assert worker.wait() == 0, worker.output()

    assert group.wait(timeout=60) is group
    assert group.progress() == GroupProgress(total=1000, succeeded=1000)
    values = [2 * i for i in range(1000)]
    assert group.return_values == values
    assert [result.args for result in group.results()[:3]] == [[0, 0], [1, 1], [2, 2]]

    ran = stored(queue_db, summary)
    assert ran.status == "SUCCESSFUL"
    assert ran.return_value == {"args": [values, "total"], "kwargs": {}}
    assert ran.attempts == 1
    assert stored(queue_db, fallback).status == "CANCELLED"
    assert "FallbackNotNeeded" in error_of(queue_db, fallback)[0]
    assert queue_db.queued_count() == 0
    assert not TaskDependency.objects.using(queue_db.database).exists()


def test_progress_while_running_then_cancel_part_way(queue_db, start_worker, tmp_path):
    released, gate = tmp_path / "released", tmp_path / "gate"
    released.touch()
    # The first ten calls run through; the next ones hold the worker's four
    # slots until the gate appears.
    calls = [(queue_db.database, str(released if i < 10 else gate)) for i in range(1000)]
    group = on(queue_db, tasks.wait_for_file).enqueue_group(calls)
    then = on(queue_db, tasks.echo).after(group).enqueue()
    fallback = on(queue_db, tasks.echo).after(group, on="failure").enqueue("some failed")

    worker = start_worker(queue_db, "--concurrency", "4")
    # The worker may claim a few tasks ahead of its slots: those are running
    # too, as far as the queue knows.
    progress = wait_until(
        lambda: (p := group.progress()).succeeded == 10 and p.running >= 4 and p,
        message="ten members done and four running",
    )
    assert progress.waiting + progress.running == 990
    assert progress.finished == 10 and not progress.is_finished
    with pytest.raises(TimeoutError, match=group.id):
        group.wait(timeout=0.1)

    cancelled = group.cancel()  # what had not started
    assert cancelled == 990 - progress.running
    assert group.progress() == GroupProgress(
        total=1000, running=progress.running, succeeded=10, cancelled=cancelled
    )
    assert Task.objects.using(queue_db.database).get(pk=then.id).status == "BLOCKED"

    gate.touch()
    group.wait(timeout=60)
    succeeded = 1000 - cancelled
    assert group.progress() == GroupProgress(total=1000, succeeded=succeeded, cancelled=cancelled)
    with pytest.raises(ValueError, match=f"{cancelled} did not succeed"):
        _ = group.return_values
    statuses = [result.status for result in group.results()]
    # Django's word for cancelled is FAILED; those cancelled came last.
    assert (
        statuses
        == [TaskResultStatus.SUCCESSFUL] * succeeded + [TaskResultStatus.FAILED] * cancelled
    )

    wait_until(lambda: queue_db.queued_count() == 0, message="the fan-in tasks to end")
    worker.signal()
    assert worker.wait() == 0, worker.output()
    assert stored(queue_db, then).status == "CANCELLED"
    path, message = error_of(queue_db, then)
    assert path == "django_tasks_q.exceptions.DependencyFailed"
    assert f"group {group.id} (tests.tasks.wait_for_file)" in message
    assert f"{cancelled} of its 1000 members unsuccessful" in message
    ran = stored(queue_db, fallback)
    assert ran.status == "SUCCESSFUL"
    assert ran.return_value == {"args": [group.id, "some failed"], "kwargs": {}}


def test_a_failed_member_cancels_the_fan_in_and_runs_the_fallback(queue_db, run_worker):
    group = on(queue_db, tasks.double).enqueue_group([(1,), (None,), (3,)])
    then = on(queue_db, tasks.echo).after(group).enqueue()
    fallback = on(queue_db, tasks.echo).after(group, on="failure").enqueue()

    run_worker(queue_db)

    assert group.progress() == GroupProgress(total=3, succeeded=2, failed=1)
    assert [r.status for r in group.results()] == [
        TaskResultStatus.SUCCESSFUL,
        TaskResultStatus.FAILED,
        TaskResultStatus.SUCCESSFUL,
    ]
    with pytest.raises(ValueError, match="1 did not succeed"):
        _ = group.return_values
    assert stored(queue_db, then).status == "CANCELLED"
    assert "1 of its 3 members unsuccessful" in error_of(queue_db, then)[1]
    assert stored(queue_db, fallback).return_value == {"args": [group.id], "kwargs": {}}


def test_a_group_can_wait_for_a_task_and_a_task_for_it(queue_db, run_worker):
    first = on(queue_db, tasks.add).enqueue(1, 2)
    group = on(queue_db, tasks.double).after(first).enqueue_group([(), ("x",)])
    assert group.progress() == GroupProgress(total=2, waiting=2)  # blocked
    then = on(queue_db, tasks.echo).after(group).enqueue()

    run_worker(queue_db)

    assert group.return_values == [6, 6]
    assert stored(queue_db, then).return_value == {"args": [[6, 6]], "kwargs": {}}


def test_a_group_is_found_again_by_its_id(queue_db, run_worker):
    group = on(queue_db, tasks.double).enqueue_group([(1,), (2,)])
    found = GroupResult.get(group.id, backend=queue_db.alias)
    assert found == group
    assert found.task_path == "tests.tasks.double"
    assert found.size == 2

    run_worker(queue_db)
    assert GroupResult.get(group.id, backend=queue_db.alias).return_values == [2, 4]
    with pytest.raises(TaskResultDoesNotExist):
        GroupResult.get("0190a0a0-0000-7000-8000-000000000000", backend=queue_db.alias)
    with pytest.raises(TaskResultDoesNotExist):
        GroupResult.get("not an id", backend=queue_db.alias)


def test_a_task_after_a_finished_group_is_resolved_at_enqueue(queue_db, run_worker):
    group = on(queue_db, tasks.double).enqueue_group([(1,), (2,)])
    run_worker(queue_db)

    then = on(queue_db, tasks.echo).after(group.id).enqueue("x")  # an id will do
    # No worker has run since: the enqueue itself saw the group had ended.
    assert Task.objects.using(queue_db.database).get(pk=then.id).args == [[2, 4], "x"]


def test_a_group_and_a_task_together_give_their_values_in_order(queue_db, run_worker):
    group = on(queue_db, tasks.double).enqueue_group([(1,), (2,)])
    single = on(queue_db, tasks.double).enqueue(5)
    then = on(queue_db, tasks.echo).after(single, group).enqueue()

    run_worker(queue_db)

    assert stored(queue_db, then).return_value == {"args": [[10, [2, 4]]], "kwargs": {}}


def test_a_group_whose_last_members_were_deleted_is_resolved_by_the_sweep(queue_db):
    group = on(queue_db, tasks.double).enqueue_group([(1,), (2,), (3,)])
    then = on(queue_db, tasks.echo).after(group).enqueue()
    members = Task.objects.using(queue_db.database).filter(group_id=group.id)
    assert operations.delete_waiting(members) == 3  # an operator's delete passes nothing on
    assert group.progress() == GroupProgress(total=3)  # finished: none left to wait for

    assert chains.sweep(queue_db.database) == 1

    assert stored(queue_db, then).status == "CANCELLED"
    assert "3 of its 3 members unsuccessful" in error_of(queue_db, then)[1]
    assert chains.sweep(queue_db.database) == 0


def test_the_sweep_leaves_a_task_waiting_for_a_group_with_members_queued(queue_db, monkeypatch):
    group = on(queue_db, tasks.double).enqueue_group([(1,), (2,)])
    # As if the enqueuing process died between its commit and the link.
    monkeypatch.setattr(chains, "link", lambda *args: None)
    then = on(queue_db, tasks.echo).after(group).enqueue()
    monkeypatch.undo()

    assert chains.sweep(queue_db.database) == 0
    assert Task.objects.using(queue_db.database).get(pk=then.id).status == "BLOCKED"


def test_a_group_whose_link_never_ran_fans_in_through_the_sweep(queue_db, run_worker, monkeypatch):
    group = on(queue_db, tasks.double).enqueue_group([(1,), (2,)])
    monkeypatch.setattr(chains, "link", lambda *args: None)
    then = on(queue_db, tasks.echo).after(group).enqueue()
    monkeypatch.undo()

    run_worker(queue_db)  # records the members without knowing of the fan-in
    run_worker(queue_db)  # sweeps, then runs it

    assert stored(queue_db, then).return_value == {"args": [[2, 4]], "kwargs": {}}


def test_enqueue_group_rejects_bad_input_before_writing_anything(queue_db):
    with pytest.raises(InvalidTask, match="at least one call"):
        on(queue_db, tasks.double).enqueue_group([])
    with pytest.raises(InvalidTask, match="cannot have unique keys"):
        on(queue_db, tasks.unique_echo).enqueue_group([(1,)])
    with pytest.raises(InvalidTask, match="cannot have unique keys"):
        on(queue_db, tasks.double).using(unique_key="k").enqueue_group([(1,)])
    with pytest.raises(InvalidTask, match="is not a task result, a group, or an id"):
        on(queue_db, tasks.echo).after("nope")
    unknown = "0190a0a0-0000-7000-8000-000000000000"
    with pytest.raises(TaskResultDoesNotExist, match=f"no task or group {unknown}"):
        on(queue_db, tasks.echo).after(unknown).enqueue()
    assert queue_db.queued_count() == 0


def test_the_redis_backend_rejects_groups(redis_queue_db):
    with pytest.raises(InvalidTask, match="RedisBackend does not support groups"):
        tasks.double.using(backend="redis").enqueue_group([(1,)])
    with pytest.raises(TaskResultDoesNotExist, match="RedisBackend has no groups"):
        GroupResult.get("0190a0a0-0000-7000-8000-000000000000", backend="redis")


def test_the_admin_shows_a_members_group_and_lists_its_members(queue_db, superuser, settings):
    settings.TASKS = {**settings.TASKS, "default": settings.TASKS[queue_db.alias]}
    group = on(queue_db, tasks.double).enqueue_group([(1,), (2,)])
    other = on(queue_db, tasks.double).enqueue(3)
    then = on(queue_db, tasks.echo).after(group).enqueue()
    [first, second] = group.results()
    members = f"?group_id={group.id}"

    page = superuser.get(reverse("admin:django_tasks_q_task_change", args=[first.id]))
    assert group.id in page.content.decode()
    assert reverse("admin:django_tasks_q_task_changelist") + members in page.content.decode()

    listed = superuser.get(reverse("admin:django_tasks_q_task_changelist") + members)
    assert {str(row.pk) for row in listed.context["cl"].result_list} == {first.id, second.id}
    assert other.id not in listed.content.decode()

    # The task waiting for the group links to its members.
    waiting = superuser.get(reverse("admin:django_tasks_q_task_change", args=[then.id]))
    assert "tests.tasks.double × 2" in waiting.content.decode()
    assert members in waiting.content.decode()


def test_pruning_forgets_groups_whose_members_are_all_gone(queue_db, run_worker):
    pruned = on(queue_db, tasks.double).enqueue_group([(1,), (2,)])
    kept = on(queue_db, tasks.double).enqueue_group([(3,)])
    run_worker(queue_db)
    TaskResult.objects.using(queue_db.database).filter(group_id=kept.id).update(
        finished_at=timezone.now() + timedelta(days=1)  # not old enough to prune
    )

    operations.prune(timedelta(0), using=queue_db.database)

    with pytest.raises(TaskResultDoesNotExist):
        GroupResult.get(pruned.id, backend=queue_db.alias)
    assert GroupResult.get(kept.id, backend=queue_db.alias).return_values == [6]
