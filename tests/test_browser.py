"""The admin in a real browser: headless Chromium (Debian's), driven by Playwright.

An operator logs in, finds a failed task from the dashboard, reads its
traceback, retries it, and sees it succeed once a real worker has run it.
Screenshots go to test-artifacts/.
"""

import os
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.db import connections

from django_tasks_q.models import ResultStatus, TaskDependency, TaskResult, TaskStatus

from . import tasks
from .conftest import ROOT, unavailable
from .factories import make_result, make_task, make_worker

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = ROOT / "test-artifacts"
# The admin shows the SQL tables: the database backends only.
pytestmark = pytest.mark.database_only


@pytest.fixture
def browser(monkeypatch):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed (it is in the dev dependency group)")
    if not CHROMIUM.exists():
        unavailable(f"Chromium not found at {CHROMIUM}: apt-get install chromium")
    # Playwright's sync API runs an event loop in this thread; the ORM calls
    # the test makes between page loads are still plain synchronous code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
            # The test ran inside Playwright's greenlet, which has its own
            # database connections: close them, or they outlive the test
            # database.
            connections.close_all()


def test_operator_retries_a_failed_task_from_the_dashboard(
    queue_db, settings, live_server, browser, run_worker
):

    settings.TASKS = {**settings.TASKS, "default": settings.TASKS[queue_db.alias]}
    User.objects.create_superuser("operator", password="s3cret-pw")
    # A real failure: attempt 1 raises, and with no retries the task fails.
    # The admin's retry allows one more attempt, which succeeds.
    once = replace(tasks.fail_until, max_retries=0).using(backend=queue_db.alias)
    result = once.enqueue(queue_db.database, succeed_on=2)
    run_worker(queue_db)
    assert TaskResult.objects.using(queue_db.database).get().status == ResultStatus.FAILED

    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(30_000)

    def shot(name):
        page.screenshot(path=ARTIFACTS / f"{queue_db.vendor}-{name}.png", full_page=True)

    page.goto(f"{live_server.url}/admin/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", "s3cret-pw")
    page.click("input[type=submit]")
    page.click("text=Dashboard")
    # The default backend's section: the one whose numbers link to the lists.
    section = page.locator('section[data-backend="default"]')
    default = section.locator('tr[data-queue="default"]')
    assert default.locator('[data-stat="failed"]').inner_text() == "1"
    assert default.locator('[data-stat="waiting"]').inner_text() == "0"
    assert section.locator("svg.taskq-chart rect.failed").count() == 1
    shot("1-dashboard")

    # From the dashboard's failed count to the failed task, and its traceback.
    default.locator('[data-stat="failed"] a').click()
    shot("2-failed-list")
    page.click(f'a[href*="{result.id}"]')
    assert "ValueError: attempt 1 fails" in page.inner_text("#content")
    shot("3-failed-task")

    page.click("button:text('Retry')")
    assert "Retry these tasks?" in page.inner_text("#content")
    shot("4-confirm")
    page.click("input[type=submit][value='Yes, retry them']")
    assert "Retried 1 task: it is waiting in the queue." in page.inner_text(".messagelist")
    shot("5-retried")

    # A worker runs it; the same id now reads as a success.
    run_worker(queue_db)
    page.goto(f"{live_server.url}/admin/django_tasks_q/taskresult/{result.id}/change/")
    content = page.inner_text("#content")
    assert "Successful" in content and "failed: ValueError" in content
    shot("6-succeeded")
    page.goto(f"{live_server.url}/admin/django_tasks_q/dashboard/")
    # No failure left in the last hour: the chart's bar turned from failed to ok.
    assert default.locator('[data-stat="failed"]').inner_text() == "0"
    assert section.locator("svg.taskq-chart rect.ok").count() == 1
    assert section.locator("svg.taskq-chart rect.failed").count() == 0
    shot("7-dashboard-after")
    assert os.listdir(ARTIFACTS)


def test_every_list_fits_a_1366_px_screen(queue_db, settings, live_server, browser):
    """At 1366 px (a common laptop) no list scrolls sideways: long ids are cut
    with an ellipsis, times read as ages. Screenshots of each page go to
    test-artifacts/; docs/screenshots/ holds copies of the SQLite run's."""
    settings.TASKS = {**settings.TASKS, "default": settings.TASKS[queue_db.alias]}
    User.objects.create_superuser("operator", password="s3cret-pw")
    host = "build-server-eu-west-1.compute.example.internal"
    workers = [f"{host}-{pid}-a1b2c3" for pid in (123456, 123457)]
    for worker_id in workers:
        make_worker(queue_db, worker_id, hostname=host, queues=["default", "emails", "reports"])
    long_path = "myproject.billing.tasks.send_the_monthly_invoice_reminders"
    parent = make_task(
        queue_db, status=TaskStatus.RUNNING, task_path=long_path, worker_id=workers[0]
    )
    make_task(queue_db, task_path=long_path, queue_name="emails", unique_key="invoice:42")
    make_task(queue_db, run_in=timedelta(minutes=10), task_path="tests.tasks.add")
    blocked = make_task(queue_db, status=TaskStatus.BLOCKED, run_on="SUCCESS", task_path=long_path)
    TaskDependency.objects.using(queue_db.database).create(child=blocked.pk, parent=parent.pk)
    message = "ConnectionRefusedError: [Errno 111] Connection refused while sending invoice 42"
    for n in range(6):
        make_result(
            queue_db,
            task_path=long_path,
            worker_ids=[workers[n % 2]],
            finished_ago=timedelta(minutes=n * 7),
            errors=[
                {"exception_class_path": "builtins.ConnectionRefusedError", "traceback": message}
            ],
        )
        make_result(queue_db, ResultStatus.SUCCESSFUL, finished_ago=timedelta(minutes=n * 5))

    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    page.set_default_timeout(30_000)
    page.goto(f"{live_server.url}/admin/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", "s3cret-pw")
    page.click("input[type=submit]")

    pages = {
        "task-list": "task/",
        "result-list": "taskresult/",
        "worker-list": "worker/",
        "schedule-list": "schedule/",
        "blocked-task": f"task/{blocked.pk}/change/",
        "dashboard": "dashboard/",
    }
    for name, path in pages.items():
        page.goto(f"{live_server.url}/admin/django_tasks_q/{path}")
        # The blocked task's page whole: what it waits for is below the fold.
        full = name == "blocked-task"
        page.screenshot(path=ARTIFACTS / f"{queue_db.vendor}-1366-{name}.png", full_page=full)
        # Neither the page nor the list's own box (Django's .results scrolls).
        for box in ("document.scrollingElement", "document.querySelector('.results')"):
            overflow = page.evaluate(f"(e => e && [e.scrollWidth, e.clientWidth])({box})")
            assert not overflow or overflow[0] <= overflow[1], f"{name}: {box} scrolls sideways"
    # The worker ids are cut on one line (a row of two lines is 50 px high),
    # and whole on hover.
    page.goto(f"{live_server.url}/admin/django_tasks_q/worker/")
    worker_id = page.locator(f'#result_list [title="{workers[0]}"]')
    assert worker_id.evaluate("e => e.scrollWidth > e.clientWidth")  # cut
    assert worker_id.evaluate("e => e.getBoundingClientRect().height") < 25
