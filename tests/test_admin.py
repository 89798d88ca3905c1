"""The admin: lists, detail pages, actions with their confirmation, permissions,
and the dashboard; on SQLite and PostgreSQL."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connections
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from django_tasks_q.admin.dashboard import throughput_chart
from django_tasks_q.admin.display import ago
from django_tasks_q.admin.pagination import EstimatedCountPaginator
from django_tasks_q.models import ResultStatus, Task, TaskDependency, TaskResult, TaskStatus

from .factories import make_result, make_task, make_worker

# About the SQL tables: the database backends only.
pytestmark = pytest.mark.database_only

TASKS_URL = reverse("admin:django_tasks_q_task_changelist")
RESULTS_URL = reverse("admin:django_tasks_q_taskresult_changelist")
WORKERS_URL = reverse("admin:django_tasks_q_worker_changelist")
DASHBOARD_URL = reverse("admin:django_tasks_q_dashboard_changelist")


@pytest.fixture
def admin_queue(queue_db, settings):
    """The backend under test as the default one: the one the admin shows."""
    settings.TASKS = {**settings.TASKS, "default": settings.TASKS[queue_db.alias]}
    return queue_db


def user(username, *perms, staff=True):
    person = User.objects.create_user(username, password="pw", is_staff=staff)
    for codename in perms:
        person.user_permissions.add(Permission.objects.get(codename=codename))
    client = Client()
    client.force_login(person)
    return client


def history(backend):
    return TaskResult.objects.using(backend.database)


def queue(backend):
    return Task.objects.using(backend.database)


def messages_of(response):
    return [str(m) for m in response.context["messages"]]


# -- lists and detail pages ------------------------------------------------------------


@pytest.mark.smoke  # its last-error column: a JSON path Django 5.2 writes wrong on SQLite
def test_result_list_shows_what_an_operator_scans(admin_queue, superuser):
    make_result(admin_queue, task_path="tests.tasks.add", worker_ids=["w-1", "w-2"], attempts=2)
    make_result(admin_queue, ResultStatus.SUCCESSFUL, queue_name="emails")

    page = superuser.get(RESULTS_URL).content.decode()

    for text in ("tests.tasks.add", "Failed", "Successful", "emails", "w-2", "20.0 ms"):
        assert text in page
    # Filters: status, and queues and task names read through the indexes.
    assert "?status__exact=FAILED" in page and "?queue_name=emails" in page
    assert "?task_path=tests.tasks.add" in page
    # The configured queues are offered even before they have a task.
    assert "?queue_name=other" in page


def test_filters_and_search(admin_queue, superuser):
    failed = make_result(admin_queue, queue_name="emails")
    make_result(admin_queue, ResultStatus.SUCCESSFUL, task_path="tests.tasks.echo")

    def listed(query):
        return list(superuser.get(RESULTS_URL + query).context["cl"].result_list)

    assert listed("?status__exact=FAILED") == [failed]
    assert listed("?queue_name=emails") == [failed]
    assert listed("?task_path=tests.tasks.add") == [failed]
    assert listed(f"?q={failed.pk}") == [failed]
    assert listed("?q=add") == [failed]
    assert listed("?q=nothing-like-it") == []


def test_queue_list_and_state_filter(admin_queue, superuser):
    running = make_task(admin_queue, status=TaskStatus.RUNNING)
    waiting = make_task(admin_queue)
    scheduled = make_task(admin_queue, run_in=timedelta(hours=1))
    blocked = make_task(admin_queue, status=TaskStatus.BLOCKED)  # for other tasks

    def listed(query):
        return set(superuser.get(TASKS_URL + query).context["cl"].result_list)

    page = superuser.get(TASKS_URL).content.decode()
    assert "Running" in page and "Scheduled" in page and "test-worker" in page
    assert "Waiting for other tasks" in page
    assert listed("?state=running") == {running}
    assert listed("?state=waiting") == {waiting}
    assert listed("?state=scheduled") == {scheduled}
    assert listed("?state=blocked") == {blocked}


def test_result_detail_is_readable_and_read_only(admin_queue, superuser):
    result = make_result(admin_queue, args=({"order": 7, "items": [1, 2]},), attempts=2)
    url = reverse("admin:django_tasks_q_taskresult_change", args=[result.pk])

    page = superuser.get(url).content.decode()

    # Arguments as indented JSON, every error with its traceback (escaped),
    # and one row per attempt with its worker.
    # (PostgreSQL's jsonb keeps its own key order.)
    assert "[\n  {\n    &quot;" in page and "\n    &quot;order&quot;: 7" in page
    assert "\n    &quot;items&quot;: [\n      1,\n      2\n    ]" in page
    assert page.count("ValueError: &lt;b&gt;boom&lt;/b&gt;") == 2
    assert "<b>boom" not in page
    assert "worker-2" in page and "failed: ValueError" in page
    # Nothing to save: the form is read-only, and a POST is refused.
    assert 'name="_save"' not in page
    assert superuser.post(url, {"status": "SUCCESSFUL"}).status_code == 403
    # The object's own actions lead to the confirmation page.
    assert 'value="retry_results"' in page and 'value="rerun_results"' in page


def test_task_detail_shows_a_running_task_without_cancel_or_delete(admin_queue, superuser):
    running = make_task(admin_queue, status=TaskStatus.RUNNING)
    page = superuser.get(reverse("admin:django_tasks_q_task_change", args=[running.pk]))
    page = page.content.decode()
    assert "test-worker" in page and "Running" in page
    assert 'value="cancel_tasks"' not in page and "deletelink" not in page

    waiting = make_task(admin_queue)
    page = superuser.get(reverse("admin:django_tasks_q_task_change", args=[waiting.pk]))
    assert 'value="cancel_tasks"' in page.content.decode()


def test_task_detail_shows_the_unique_key_and_deadline_and_search_finds_the_key(
    admin_queue, superuser
):
    deadline = datetime(2030, 5, 6, 7, 8, 9, tzinfo=UTC)
    keyed = make_task(admin_queue, unique_key="order:42", expires_at=deadline)
    make_task(admin_queue, unique_key="order:421")
    page = superuser.get(reverse("admin:django_tasks_q_task_change", args=[keyed.pk]))
    page = page.content.decode()
    assert "order:42" in page and "2030-05-06 07:08:09" in page

    found = superuser.get(TASKS_URL + "?q=order:42").context["cl"].result_list
    assert list(found) == [keyed]


def test_worker_list_marks_live_and_stale(admin_queue, superuser):
    make_worker(admin_queue, "live-one")
    make_worker(admin_queue, "stale-one", heartbeat_ago=timedelta(hours=1))
    page = superuser.get(WORKERS_URL).content.decode()
    assert "live-one" in page and "stale-one" in page
    assert 'alt="True"' in page and 'alt="False"' in page


# -- actions ---------------------------------------------------------------------------


def test_retry_asks_first_then_retries(admin_queue, superuser):
    failed = make_result(admin_queue)
    succeeded = make_result(admin_queue, ResultStatus.SUCCESSFUL)
    chosen = {"action": "retry_results", "_selected_action": [failed.pk, succeeded.pk]}

    # From the list's action menu ("index" is the Go button): a question.
    asked = superuser.post(RESULTS_URL, {**chosen, "index": 0})
    assert asked.status_code == 200
    assert asked.templates[0].name == "admin/django_tasks_q/confirm_action.html"
    page = asked.content.decode()
    assert "Retry these tasks?" in page and "2 task results selected" in page
    assert 'name="confirm" value="yes"' in page and "csrfmiddlewaretoken" in page
    assert history(admin_queue).count() == 2 and not queue(admin_queue).exists()

    done = superuser.post(RESULTS_URL, {**chosen, "confirm": "yes"}, follow=True)
    assert messages_of(done) == [
        "Retried 1 task: it is waiting in the queue.",
        "1 task had succeeded (or was gone), and was left alone.",
    ]
    assert queue(admin_queue).get().pk == failed.pk
    assert list(history(admin_queue)) == [succeeded]


def test_select_across_acts_on_every_filtered_row_not_just_the_page(admin_queue, superuser):
    emails = [make_result(admin_queue, queue_name="emails") for _ in range(3)]
    other = make_result(admin_queue)
    url = RESULTS_URL + "?queue_name=emails"
    chosen = {"action": "retry_results", "_selected_action": [emails[0].pk], "select_across": 1}

    asked = superuser.post(url, {**chosen, "index": 0}).content.decode()
    assert "3 task results selected" in asked and 'name="select_across" value="1"' in asked

    superuser.post(url, {**chosen, "confirm": "yes"})
    assert set(queue(admin_queue).values_list("pk", flat=True)) == {r.pk for r in emails}
    assert list(history(admin_queue)) == [other]


def test_rerun_and_delete_results(admin_queue, superuser):
    result = make_result(admin_queue, ResultStatus.SUCCESSFUL)
    chosen = {"_selected_action": [result.pk], "confirm": "yes"}

    done = superuser.post(RESULTS_URL, {**chosen, "action": "rerun_results"}, follow=True)
    assert messages_of(done) == ["Enqueued 1 new task."]
    copy = queue(admin_queue).get()
    assert copy.pk != result.pk and copy.args == result.args and copy.attempts == 0

    asked = superuser.post(RESULTS_URL, {**chosen, "action": "delete_results", "confirm": ""})
    assert "Delete these results" in asked.content.decode()
    done = superuser.post(RESULTS_URL, {**chosen, "action": "delete_results"}, follow=True)
    assert messages_of(done) == ["Deleted 1 result."]
    assert not history(admin_queue).exists()


def test_cancel_and_delete_tasks_leave_running_ones(admin_queue, superuser):
    running = make_task(admin_queue, status=TaskStatus.RUNNING)
    waiting = make_task(admin_queue)
    chosen = {"_selected_action": [running.pk, waiting.pk], "confirm": "yes"}

    done = superuser.post(TASKS_URL, {**chosen, "action": "cancel_tasks"}, follow=True)
    assert messages_of(done) == [
        "Cancelled 1 task.",
        "1 task was running or gone, and was left alone.",
    ]
    assert history(admin_queue).get().status == ResultStatus.CANCELLED
    assert list(queue(admin_queue)) == [running]

    another = make_task(admin_queue)
    chosen["_selected_action"] = [running.pk, another.pk]
    done = superuser.post(TASKS_URL, {**chosen, "action": "delete_tasks"}, follow=True)
    assert messages_of(done)[0] == "Deleted 1 task."
    assert list(queue(admin_queue)) == [running]
    assert history(admin_queue).count() == 1


def test_the_django_delete_action_is_replaced(admin_queue, superuser):
    make_result(admin_queue)
    actions = dict(superuser.get(RESULTS_URL).context["action_form"].fields["action"].choices)
    assert "delete_selected" not in actions
    assert {"retry_results", "rerun_results", "delete_results"} <= set(actions)


# -- permissions and CSRF --------------------------------------------------------------


def test_staff_without_change_permission_can_look_but_not_retry(admin_queue):
    viewer = user("viewer", "view_taskresult", "view_task")
    failed = make_result(admin_queue)
    retry = {"action": "retry_results", "_selected_action": [failed.pk]}

    listing = viewer.get(RESULTS_URL)
    assert listing.status_code == 200
    assert listing.context["action_form"] is None  # no action it may run
    detail = viewer.get(reverse("admin:django_tasks_q_taskresult_change", args=[failed.pk]))
    assert detail.status_code == 200 and 'value="retry_results"' not in detail.content.decode()
    for data in ({"index": 0}, {"confirm": "yes"}):
        assert viewer.post(RESULTS_URL, {**retry, **data}).status_code == 200

    # With the delete permission it has actions, but retry is not one of them.
    deleter = user("deleter", "view_taskresult", "delete_taskresult")
    choices = dict(deleter.get(RESULTS_URL).context["action_form"].fields["action"].choices)
    assert "delete_results" in choices and "retry_results" not in choices
    for data in ({"index": 0}, {"confirm": "yes"}):
        response = deleter.post(RESULTS_URL, {**retry, **data}, follow=True)
        assert "No action selected." in messages_of(response)

    assert list(history(admin_queue)) == [failed] and not queue(admin_queue).exists()


def test_change_permission_allows_retry_but_not_delete(admin_queue):
    operator = user("operator", "change_taskresult")
    failed = make_result(admin_queue)
    chosen = {"_selected_action": [failed.pk], "confirm": "yes"}

    operator.post(RESULTS_URL, {**chosen, "action": "delete_results"})
    assert history(admin_queue).exists()
    operator.post(RESULTS_URL, {**chosen, "action": "retry_results"})
    assert queue(admin_queue).get().pk == failed.pk


def test_non_staff_users_see_nothing(admin_queue):
    outsider = user("outsider", "view_taskresult", "change_taskresult", staff=False)
    failed = make_result(admin_queue)
    for url in (RESULTS_URL, TASKS_URL, WORKERS_URL, DASHBOARD_URL):
        response = outsider.get(url)
        assert response.status_code == 302 and "/login/" in response["Location"]
    response = outsider.post(
        RESULTS_URL,
        {"action": "retry_results", "_selected_action": [failed.pk], "confirm": "yes"},
    )
    assert response.status_code == 302 and list(history(admin_queue)) == [failed]


def test_actions_need_the_csrf_token(admin_queue):
    User.objects.create_superuser("root", password="pw")
    client = Client(enforce_csrf_checks=True)
    client.login(username="root", password="pw")
    failed = make_result(admin_queue)
    response = client.post(
        RESULTS_URL,
        {"action": "retry_results", "_selected_action": [failed.pk], "confirm": "yes"},
    )
    assert response.status_code == 403
    assert list(history(admin_queue)) == [failed]


# -- large tables ----------------------------------------------------------------------


def test_list_pages_do_not_count_big_tables(admin_queue, superuser, monkeypatch):
    """Past exact_below rows, PostgreSQL's planner estimate replaces COUNT(*)."""
    for _ in range(3):
        make_result(admin_queue)
    monkeypatch.setattr(EstimatedCountPaginator, "exact_below", 0)
    with CaptureQueriesContext(connections[admin_queue.database]) as queries:
        response = superuser.get(RESULTS_URL)
    assert response.status_code == 200
    counts = [q["sql"] for q in queries if "COUNT(" in q["sql"].upper()]
    explains = [q["sql"] for q in queries if q["sql"].startswith("EXPLAIN")]
    if admin_queue.vendor == "postgresql":
        assert counts == [] and len(explains) == 1
    else:
        assert len(counts) == 1 and explains == []  # SQLite: exact, and cheap


def test_big_tables_keep_the_payloads_off_the_list_page(admin_queue, superuser):
    make_result(admin_queue, args=("x" * 10_000,))
    with CaptureQueriesContext(connections[admin_queue.database]) as queries:
        response = superuser.get(RESULTS_URL)
    listing = [
        q["sql"] for q in queries if q["sql"].startswith('SELECT "django_tasks_q_taskresult"."id"')
    ]
    assert listing and all('"args"' not in sql for sql in listing)
    # The error column reads the last error's text, not the list of errors.
    assert all("errors" in row.get_deferred_fields() for row in response.context["cl"].result_list)


# -- the dashboard ---------------------------------------------------------------------


def test_dashboard_counts_per_queue(admin_queue, superuser):
    for _ in range(2):
        make_task(admin_queue)
    make_task(admin_queue, run_in=timedelta(minutes=5))
    make_task(admin_queue, status=TaskStatus.RUNNING)
    make_task(admin_queue, queue_name="emails", status=TaskStatus.RUNNING)
    make_task(admin_queue, queue_name="emails", status=TaskStatus.BLOCKED)  # for other tasks
    make_result(admin_queue)  # failed a second ago
    make_result(admin_queue, ResultStatus.EXPIRED, finished_ago=timedelta(minutes=30))
    make_result(admin_queue, finished_ago=timedelta(hours=2))  # too long ago
    # One fixed time in the middle of a minute: the three share a bar whenever the test runs.
    in_one_minute = timezone.now().replace(second=30, microsecond=0) - timedelta(minutes=2)
    for _ in range(3):
        make_result(
            admin_queue, ResultStatus.SUCCESSFUL, queue_name="emails", finished_at=in_one_minute
        )
    make_worker(admin_queue, "live-worker")
    make_worker(admin_queue, "gone-worker", heartbeat_ago=timedelta(hours=1))

    response = superuser.get(DASHBOARD_URL)
    assert response.status_code == 200
    [section] = [s for s in response.context["backends"] if s["alias"] == "default"]
    queues = {q.queue: q for q in section["queues"]}
    default, emails = queues["default"], queues["emails"]
    assert (default.waiting, default.scheduled, default.running) == (2, 1, 1)
    assert default.failed_last_hour == 2 and default.finished_last_hour == 2
    assert default.oldest_waiting_seconds >= 5
    assert (emails.waiting, emails.running, emails.failed_last_hour) == (0, 1, 0)
    assert (emails.blocked, default.blocked) == (1, 0)
    assert emails.finished_last_hour == 3
    assert [bar[1:] for bar in emails.throughput if bar[1] or bar[2]] == [(3, 0)]
    assert len(emails.throughput) == 60
    assert queues["other"].waiting == 0  # configured, still empty

    page = response.content.decode()
    assert "live-worker" in page and "gone-worker" not in page
    assert "?queue_name=emails&amp;state=blocked" in page
    assert "1 worker has not sent a heartbeat lately." in page
    assert "<svg" in page and "<script" not in page.split('id="content"')[1]
    assert 'class="ok"' in page and "3 ok, 0 failed" in page


def test_dashboard_is_linked_from_the_admin_index_for_staff_only(admin_queue, superuser):
    assert DASHBOARD_URL in superuser.get(reverse("admin:index")).content.decode()

    staff = user("staff")  # staff, but no permission on the queue
    assert DASHBOARD_URL not in staff.get(reverse("admin:index")).content.decode()
    assert staff.get(DASHBOARD_URL).status_code == 403

    viewer = user("viewer", "view_task")
    assert viewer.get(DASHBOARD_URL).status_code == 200


def test_date_hierarchy_probes_the_index_instead_of_reading_every_row(admin_queue, superuser):
    march = datetime(2025, 3, 1, 12, tzinfo=UTC)
    for day in (3, 17, 17):
        make_result(admin_queue, finished_at=march.replace(day=day))
    make_result(admin_queue, finished_at=datetime(2024, 12, 31, 23, tzinfo=UTC))

    with CaptureQueriesContext(connections[admin_queue.database]) as queries:
        years = superuser.get(RESULTS_URL).content.decode()
    assert "finished_at__year=2024" in years and "finished_at__year=2025" in years
    assert not any("DISTINCT" in q["sql"] for q in queries)

    days = superuser.get(RESULTS_URL + "?finished_at__year=2025&finished_at__month=3")
    links = days.content.decode()
    assert "finished_at__day=3" in links and "finished_at__day=17" in links
    assert "finished_at__day=4" not in links
    assert len(days.context["cl"].result_list) == 3


def test_delete_from_the_detail_page(admin_queue, superuser):
    result = make_result(admin_queue)
    url = reverse("admin:django_tasks_q_taskresult_delete", args=[result.pk])
    assert "Are you sure" in superuser.get(url).content.decode()
    superuser.post(url, {"post": "yes"})
    assert not history(admin_queue).exists()

    waiting = make_task(admin_queue)
    superuser.post(reverse("admin:django_tasks_q_task_delete", args=[waiting.pk]), {"post": "yes"})
    assert not queue(admin_queue).exists()
    running = make_task(admin_queue, status=TaskStatus.RUNNING)
    url = reverse("admin:django_tasks_q_task_delete", args=[running.pk])
    assert superuser.post(url, {"post": "yes"}).status_code == 403
    assert list(queue(admin_queue)) == [running]


# -- what an operator reads at a glance --------------------------------------------------


RETRIED = {"exception_class_path": "builtins.KeyError", "traceback": "KeyError: 'once'\n"}


def test_result_list_has_a_short_error_column_with_the_whole_error_on_hover(admin_queue, superuser):
    long = "x" * 200
    make_result(
        admin_queue,
        task_path="tests.tasks.first",
        errors=[
            {"exception_class_path": "builtins.ValueError", "traceback": "ValueError: old\n"},
            {
                "exception_class_path": "tests.tasks.Broken",
                "traceback": f"Traceback (most recent call last):\n  x\ntests.tasks.Broken: "
                f"<b>{long}</b>\nsecond line\n",
            },
        ],
    )
    # A success after a failed attempt: nothing wrong to show.
    make_result(admin_queue, ResultStatus.SUCCESSFUL, attempts=2, errors=[RETRIED])

    response = superuser.get(RESULTS_URL)
    page = response.content.decode()

    # The last attempt's error: class name and first line, truncated; all of it on hover.
    [cell] = re.findall(r'<td class="field-error"><span(.*?)</td>', page, re.S)
    [(hover, shown)] = re.findall(r'title="([^"]*)">([^<]*)</span>', cell, re.S)
    assert hover == f"tests.tasks.Broken: &lt;b&gt;{long}&lt;/b&gt;\nsecond line"
    assert shown.startswith("Broken: &lt;b&gt;xxx") and shown.endswith("…")
    list_page = page.split('id="result_list"')[1]
    assert len(shown) < 100 and "ValueError" not in list_page and "KeyError" not in list_page
    assert page.count('<td class="field-error">') == 2  # the successful row's is empty
    # Still no error list read for the list page: the last error's text only.
    assert all("errors" in row.get_deferred_fields() for row in response.context["cl"].result_list)


def test_a_blocked_task_shows_what_it_waits_for_and_can_be_cancelled(admin_queue, superuser):
    running = make_task(admin_queue, status=TaskStatus.RUNNING, task_path="tests.tasks.parent")
    done = make_result(admin_queue, ResultStatus.SUCCESSFUL, task_path="tests.tasks.done")
    blocked = make_task(admin_queue, status=TaskStatus.BLOCKED, run_on="SUCCESS")
    for position, parent in enumerate((running, done)):
        TaskDependency.objects.using(admin_queue.database).create(
            child=blocked.pk, parent=parent.pk, position=position
        )
    url = reverse("admin:django_tasks_q_task_change", args=[blocked.pk])

    page = superuser.get(url).content.decode()

    assert "Waits for" in page
    assert reverse("admin:django_tasks_q_task_change", args=[running.pk]) in page
    assert reverse("admin:django_tasks_q_taskresult_change", args=[done.pk]) in page
    assert "tests.tasks.parent" in page and "Running" in page and "Successful" in page
    assert "Once every task it waits for succeeded" in page
    assert 'value="cancel_tasks"' in page

    chosen = {"_selected_action": [blocked.pk], "confirm": "yes", "action": "cancel_tasks"}
    answer = superuser.post(TASKS_URL, chosen, follow=True)
    assert messages_of(answer) == ["Cancelled 1 task."]
    assert history(admin_queue).get(pk=blocked.pk).status == ResultStatus.CANCELLED


def test_list_pages_are_titled_by_what_they_list(admin_queue, superuser):
    for url, title in (
        (TASKS_URL, "Queued tasks"),
        (RESULTS_URL, "Task results"),
        (WORKERS_URL, "Workers"),
        (reverse("admin:django_tasks_q_schedule_changelist"), "Schedules"),
    ):
        page = superuser.get(url).content.decode()
        assert f"<h1>{title}</h1>" in page and "to change" not in page


def test_one_humanising_function_for_relative_times():
    now = datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert [ago(now - timedelta(seconds=s), now) for s in (0, 7, 59.6, 60, 3725, 90000)] == [
        "0 s ago",
        "7 s ago",
        "59 s ago",
        "1 min ago",
        "1 h 2 min ago",
        "1 d 1 h ago",
    ]
    assert ago(now + timedelta(minutes=5), now) == "in 5 min"


def test_the_dashboard_says_every_age_the_same_way(admin_queue, superuser):
    make_worker(admin_queue, "live-worker", started_at=timezone.now() - timedelta(seconds=20))
    page = superuser.get(DASHBOARD_URL).content.decode()
    row = page.split('data-worker="live-worker"')[1].split("</tr>")[0]
    assert "minutes" not in row and re.search(r">2\d s ago<", row) and ">2 s ago<" in row


def test_the_dashboard_chart_has_readable_bars_and_axes():
    start = datetime(2026, 1, 1, 12, tzinfo=UTC)
    minutes = [(start + timedelta(minutes=n), n % 3, n % 2) for n in range(60)]
    chart = throughput_chart(minutes)
    assert all(bar["width"] >= 4 for bar in chart["bars"])
    times = [label["text"] for label in chart["time_labels"]]
    assert len(times) == 3 and times[0] != times[1] != times[2]
    assert chart["count_label"]["text"] == "3"
    assert chart["plot_x"] > 0 and chart["plot_height"] < chart["height"]
