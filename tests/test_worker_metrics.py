"""``runtaskworker --metrics-port``: each worker's own counters and histograms,
counted as it records its tasks, in real worker processes on every backend."""

import signal
import socket
import urllib.request
from urllib.error import URLError

from prometheus_client.parser import text_string_to_metric_families

from . import tasks
from .conftest import wait_until
from .models import Execution
from .test_recovery import SHORT_LEASE, enqueue


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def scrape(port):
    """Every sample the worker serves, by name and labels; {} while it is not up yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            text = response.read().decode()
    except (URLError, ConnectionError):
        return {}
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_a_worker_counts_the_tasks_it_runs(queue_db, start_worker):
    for n in range(4):
        enqueue(queue_db, tasks.add, n, 1)
    enqueue(queue_db, tasks.fail_until, queue_db.database, 2)  # one retry, then successful
    enqueue(queue_db, tasks.fail_until, queue_db.database, 99)  # three retries, then failed
    port = free_port()
    worker = start_worker(queue_db, "--metrics-port", str(port))

    def six_finished():
        samples = scrape(port)
        total = sum(v for (name, _), v in samples.items() if name == "taskq_tasks_finished_total")
        return samples if total == 6 else None

    samples = wait_until(six_finished, message="the worker to count six finished tasks")
    worker.signal()
    assert worker.wait() == 0

    def value(name, **labels):
        return samples.get((name, tuple(sorted({"backend": queue_db.alias, **labels}.items()))))

    def finished(task, status):
        return value("taskq_tasks_finished_total", queue="default", task=task, status=status)

    assert finished("tests.tasks.add", "SUCCESSFUL") == 4
    assert finished("tests.tasks.fail_until", "SUCCESSFUL") == 1
    assert finished("tests.tasks.fail_until", "FAILED") == 1
    assert value("taskq_task_retries_total", queue="default", task="tests.tasks.fail_until") == 4
    # One observation per attempt: 4 + 2 + 4.
    wait = "taskq_task_queue_wait_seconds"
    assert value(f"{wait}_count", queue="default") == 10
    assert value(f"{wait}_bucket", queue="default", le="+Inf") == 10
    assert value(f"{wait}_sum", queue="default") >= 0
    run = "taskq_task_run_seconds"
    assert value(f"{run}_count", queue="default", task="tests.tasks.add") == 4
    assert value(f"{run}_bucket", queue="default", task="tests.tasks.add", le="+Inf") == 4
    assert value(f"{run}_count", queue="default", task="tests.tasks.fail_until") == 6
    # Buckets are cumulative: every bound counts at most what the next one does.
    bounds = [
        count
        for (name, labels), count in samples.items()
        if name == f"{run}_bucket" and ("task", "tests.tasks.add") in labels
    ]
    assert bounds == sorted(bounds) and bounds[-1] == 4


def test_a_worker_counts_the_tasks_it_recovers(queue_db, start_worker, tmp_path):
    release = tmp_path / "release"
    for _ in range(2):
        enqueue(queue_db, tasks.long_task, queue_db.database, str(release))
    doomed = start_worker(queue_db, "--worker-id", "doomed", env=SHORT_LEASE)
    started = Execution.objects.using(queue_db.database).filter(label="started")
    wait_until(lambda: started.count() == 2, message="both tasks to start")
    doomed.process.send_signal(signal.SIGKILL)
    doomed.wait()

    release.touch()
    port = free_port()
    rescuer = start_worker(queue_db, "--metrics-port", str(port), env=SHORT_LEASE)
    labels = (("backend", queue_db.alias),)
    wait_until(
        lambda: scrape(port).get(("taskq_tasks_recovered_total", labels)) == 2,
        message="the rescuer to count two recovered tasks",
    )
    rescuer.signal()
    assert rescuer.wait() == 0
