"""What every driver shares: the workloads' timing, whatever the system.

Standard library only: this module runs in the project's environment and in
the peers' one.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository
DATA = ROOT / "bench" / ".data"  # SQLite files, worker logs, latency stamps

PG_HOST = os.environ.get("BENCH_PGHOST", "127.0.0.1")
PG_PORT = int(os.environ.get("BENCH_PGPORT", "5432"))
PG_USER = os.environ.get("BENCH_PGUSER", "postgres")
# The benchmark's databases are named PREFIX_system (bench_taskq, ...): another
# prefix lets two checkouts on one server run it at once without clashing.
PG_DATABASE_PREFIX = os.environ.get("BENCH_PGDATABASE_PREFIX", "bench")
# The Redis server; each system has a logical database of its own on it (see
# systems.py), flushed before each workload, and no other database is touched.
REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379")
# BENCH_REDIS_DB_TASKQ moves taskq-redis off 9, e.g. for a run beside another one.
REDIS_DB_TASKQ = int(os.environ.get("BENCH_REDIS_DB_TASKQ", "9"))
REDIS_DB_HUEY = 10

WARM_UPS = 20  # untimed enqueue() calls before enqueue_single
BULK_BATCH = 1000  # tasks per enqueue_many() call
LATENCY_GAP = 0.020  # seconds between two enqueues in the latency workload
# Looking at a worker's progress costs the database a query (a count over the
# result table), so look less often the longer a wait lasts: every POLL s at
# first, then every POLL_SHARE of the time waited so far (an error of at most
# 0.5 % on a drain's time, for a small share of the machine).
POLL = 0.01
POLL_SHARE = 0.005
TIMEOUT = 600.0  # seconds any one wait may take before the workload fails
MEMORY_SAMPLE = 5.0  # seconds between two reads of the worker's RSS in the memory workload


def database_name(system: str) -> str:
    return f"{PG_DATABASE_PREFIX}_{system}"


def pg_dsn(database: str) -> str:
    return f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{database}"


def redis_url(db: int) -> str:
    return f"{REDIS}/{db}"


def record_start(index) -> None:
    """The latency task's body: note when the task started, as its first act."""
    started = time.time()
    with open(os.environ["BENCH_STAMPS"], "a") as stamps:
        stamps.write(f"{index} {started}\n")


# -- timing -----------------------------------------------------------------


def enqueue_single(n: int, enqueue: Callable[[], object]) -> dict:
    for _ in range(WARM_UPS):
        enqueue()
    started = time.perf_counter()
    for _ in range(n):
        enqueue()
    return {"rate": n / (time.perf_counter() - started)}


def enqueue_bulk(n: int, enqueue_batch: Callable[[int], object]) -> dict:
    started = time.perf_counter()
    for done in range(0, n, BULK_BATCH):
        enqueue_batch(min(BULK_BATCH, n - done))
    return {"rate": n / (time.perf_counter() - started)}


def drain(n: int, worker: list[str], finished: Callable[[], int], name: str) -> dict:
    """Start ``worker`` on ``n`` queued tasks; time it until ``finished()`` reaches n."""
    started = time.perf_counter()
    process = start_worker(worker, name)
    try:
        wait_for(lambda: finished() >= n, process, f"{n} tasks to finish")
        elapsed = time.perf_counter() - started
        rss = rss_kb(process.pid)
    finally:
        stop_worker(process)
    return {"rate": n / elapsed, "seconds": elapsed, "rss_after_drain_kb": rss}


def memory(n: int, worker: list[str], finished: Callable[[], int], name: str) -> dict:
    """Start ``worker`` on ``n`` queued tasks; read its RSS every MEMORY_SAMPLE s until all finish.

    The first sample is taken as soon as a task has finished: before that the
    worker is still importing, and its memory says nothing about the drain.
    """
    started = time.perf_counter()
    process = start_worker(worker, name)
    samples = []  # [elapsed s, finished tasks, RSS MiB]
    try:
        wait_for(lambda: finished() > 0, process, "a first task to finish")
        moved, previous = time.perf_counter(), 0  # when the finished count last grew, from what
        while True:
            done = finished()
            # Read after the count, so that the last sample is of the worker
            # with all n tasks behind it.
            rss = rss_kb(process.pid) / 1024
            now = time.perf_counter()
            samples.append([round(now - started, 1), done, round(rss, 1)])
            if done >= n:
                break
            if done > previous:
                moved, previous = now, done
            elif now - moved > TIMEOUT:
                raise RuntimeError(f"no task finished for {TIMEOUT:.0f} s, {done} of {n} done")
            time.sleep(MEMORY_SAMPLE)
            if process.poll() is not None:
                raise RuntimeError(f"the worker exited ({process.returncode}) after {done} tasks")
    finally:
        stop_worker(process)
    start, last = samples[0], samples[-1]
    peak = max(samples, key=lambda sample: sample[2])
    return {
        "n": n,
        "seconds": last[0],  # to within one MEMORY_SAMPLE
        "samples": samples,
        "start": start,
        "last": last,
        "max": peak,
        "last_vs_start_pct": round((last[2] / start[2] - 1) * 100, 2),
        "max_vs_start_pct": round((peak[2] / start[2] - 1) * 100, 2),
    }


def latency(n: int, worker: list[str], enqueue: Callable[[int], object], name: str) -> dict:
    """An idle worker; a task every LATENCY_GAP s; each start minus its enqueue."""
    stamps = Path(os.environ["BENCH_STAMPS"])
    stamps.unlink(missing_ok=True)
    process = start_worker(worker, name)
    try:
        # The worker is ready (and idle) once it has run a first task.
        enqueue(-1)
        wait_for(lambda: len(read_stamps(stamps)) == 1, process, "the worker to start")
        time.sleep(1.0)
        rss_idle = rss_kb(process.pid)
        enqueued_at = {}
        first = time.perf_counter()
        for index in range(n):
            pause = first + index * LATENCY_GAP - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            enqueued_at[index] = time.time()
            enqueue(index)
        wait_for(lambda: len(read_stamps(stamps)) > n, process, f"{n} tasks to start")
    finally:
        stop_worker(process)
    started = read_stamps(stamps)
    delays = [(started[i] - enqueued_at[i]) * 1000 for i in range(n)]
    return {"latencies_ms": delays, "rss_idle_kb": rss_idle}


def read_stamps(path: Path) -> dict[int, float]:
    if not path.exists():
        return {}
    stamps = {}
    for line in path.read_text().splitlines():
        index, started = line.split()
        stamps[int(index)] = float(started)
    return stamps


# -- worker processes -------------------------------------------------------


def start_worker(command: list[str], name: str) -> subprocess.Popen:
    (DATA / "logs").mkdir(parents=True, exist_ok=True)
    log = open(DATA / "logs" / f"{name}.log", "w")  # the child process writes to it
    return subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)


def stop_worker(process: subprocess.Popen) -> None:
    """Stop gracefully (SIGTERM), as an operator would."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_for(condition: Callable[[], bool], process: subprocess.Popen, what: str) -> None:
    started = time.perf_counter()
    deadline = started + TIMEOUT
    while not condition():
        if process.poll() is not None and not condition():
            raise RuntimeError(f"the worker exited ({process.returncode}) before {what}")
        if time.perf_counter() > deadline:
            raise RuntimeError(f"gave up waiting for {what} after {TIMEOUT:.0f} s")
        time.sleep(max(POLL, (time.perf_counter() - started) * POLL_SHARE))


def rss_kb(pid: int) -> int:
    """Resident memory of one process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


# -- the command line every driver has --------------------------------------


def main(setup: Callable[[], None], workloads: dict[str, Callable[..., dict]]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("workload", choices=["setup", *workloads])
    parser.add_argument("n", type=int, nargs="?")
    parser.add_argument("--poll-interval", type=float, default=0.01)
    options = parser.parse_args()
    if options.workload == "setup":
        setup()
        return
    figures = workloads[options.workload](options.n, poll_interval=options.poll_interval)
    json.dump(figures, sys.stdout)
