"""One store's soak, run by ``python -m bench.soak`` in a process of its own
(each store has its own Django settings: bench/sites/soak/settings.py).

Enqueues the tasks, starts the workers, SIGKILLs one at random every few
seconds and starts a replacement, waits until every task has left the queue,
stops the workers (SIGTERM) and prints the store's line; exits 1 if a task
was lost or a result recorded twice.
"""

import argparse
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.sites.soak.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.tasks import TaskResultStatus, task_backends  # noqa: E402

from bench.sites.soak.tasks import RECORDS, work  # noqa: E402
from bench.soak import check, parse_arguments  # noqa: E402
from django_tasks_q.models import Task, TaskResult  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]  # the repository
DATA = Path(os.environ["SOAK_DATA"])
REDIS = settings.STORE == "redis"
BATCH = 1000  # tasks per enqueue_many() call
CONCURRENCY = 4  # threads per worker
LOOK_EVERY = 0.2  # seconds between two looks at the queue and the workers


class Soak:
    def __init__(self, options: argparse.Namespace) -> None:
        self.options = options
        self.backend = task_backends["default"]
        self.ids: dict[str, int] = {}  # result id -> task number
        self.workers: list[subprocess.Popen] = []
        self.started_workers = 0
        self.kills = 0

    def run(self) -> check.Tally:
        options = self.options
        call_command("migrate", verbosity=0)
        started = time.monotonic()
        self.enqueue(options.tasks)
        self.workers = [self.start_worker() for _ in range(options.workers)]
        next_kill = started + self.kill_gap()
        deadline = started + options.timeout
        try:
            while True:
                waiting = self.waiting()
                now = time.monotonic()
                feeding = options.duration and now - started < options.duration
                if feeding and waiting < options.tasks / 2:
                    self.enqueue(options.tasks)
                elif not waiting and not feeding:
                    break
                if now > deadline:
                    print(
                        f"{settings.STORE}: {waiting} task(s) still queued after "
                        f"--timeout {options.timeout:g} s; they count as lost",
                        file=sys.stderr,
                    )
                    break
                if options.kill_every and now >= next_kill:
                    self.kill_one()
                    next_kill = now + self.kill_gap()
                self.replace_exited()
                time.sleep(LOOK_EVERY)
            seconds = time.monotonic() - started
        finally:
            self.stop_workers()
        executions, recordings = check.read_records(DATA / RECORDS)
        return check.tally(
            settings.STORE,
            self.ids.values(),
            self.successful(),
            executions,
            recordings,
            self.kills,
            seconds,
        )

    def kill_gap(self) -> float:
        """Seconds to the next kill: --kill-every on average, never in step."""
        return random.uniform(0.5, 1.5) * self.options.kill_every

    def enqueue(self, count: int) -> None:
        first = len(self.ids)
        for start in range(first, first + count, BATCH):
            numbers = range(start, min(start + BATCH, first + count))
            results = work.enqueue_many([(n,) for n in numbers])
            self.ids.update((result.id, n) for result, n in zip(results, numbers, strict=True))

    def waiting(self) -> int:
        """Tasks not finished yet: queued, scheduled for a retry, or running."""
        if REDIS:
            pipeline = self.backend.client.pipeline(transaction=False)
            for key in (("ready", "default"), ("scheduled", "default"), ("running",)):
                pipeline.zcard(self.backend.key(*key))
            return sum(pipeline.execute())
        return Task.objects.count()

    def successful(self) -> set[int]:
        """The numbers of the tasks whose final status is SUCCESSFUL."""
        ids = list(self.ids)
        done: list[str] = []
        for start in range(0, len(ids), BATCH):
            chunk = ids[start : start + BATCH]
            if REDIS:
                pipeline = self.backend.client.pipeline(transaction=False)
                for task_id in chunk:
                    pipeline.hget(self.backend.key("task", task_id), "status")
                statuses = pipeline.execute()
                done += [i for i, s in zip(chunk, statuses, strict=True) if s == "SUCCESSFUL"]
            else:
                rows = TaskResult.objects.filter(
                    id__in=chunk, status=TaskResultStatus.SUCCESSFUL
                ).values_list("id", flat=True)
                done += [str(pk) for pk in rows]
        return {self.ids[task_id] for task_id in done}

    # -- the workers --------------------------------------------------------

    def start_worker(self) -> subprocess.Popen:
        self.started_workers += 1
        logs = DATA / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / f"worker-{self.started_workers}.log", "wb") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "django", "runtaskworker"]
                + ["--concurrency", str(CONCURRENCY)],
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"},
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def kill_one(self) -> None:
        victim = random.randrange(len(self.workers))
        self.workers[victim].send_signal(signal.SIGKILL)
        self.workers[victim].wait()
        self.kills += 1
        self.workers[victim] = self.start_worker()

    def replace_exited(self) -> None:
        """A worker that exited on its own is a finding: say so, and replace it."""
        for i, worker in enumerate(self.workers):
            if worker.poll() is not None:
                print(
                    f"{settings.STORE}: a worker exited on its own with code "
                    f"{worker.returncode} (see {DATA / 'logs'}); starting another",
                    file=sys.stderr,
                )
                self.workers[i] = self.start_worker()

    def stop_workers(self) -> None:
        for worker in self.workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        for worker in self.workers:
            try:
                worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()


def main() -> None:
    result = Soak(parse_arguments()).run()
    print(result.line(), flush=True)
    sys.exit(0 if result.ok else 1)


if __name__ == "__main__":
    main()
