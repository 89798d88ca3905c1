"""bench.soak: its line, its exit code, and the tally behind them."""

import re
import sqlite3
import subprocess
import sys
from collections import Counter

from bench.soak.check import read_records, tally

from .conftest import ROOT, wait_until

LINE = re.compile(
    r"sqlite: enqueued (\d+), lost (\d+), double-recorded (\d+), "
    r"duplicate executions (\d+), kills (\d+), time \d+\.\d s\n"
)


def soak(tmp_path, *options):
    return subprocess.Popen(
        [sys.executable, "-m", "bench.soak", "--stores", "sqlite"]
        + ["--data-dir", str(tmp_path), "--timeout", "240", *options],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_soak_with_kills_prints_its_line_and_exits_0(tmp_path):
    # --duration keeps it going for 6 s, long enough for two kills (one
    # every 0.5 to 1.5 s) however slow the machine.
    process = soak(
        tmp_path, "--tasks", "200", "--workers", "2", "--kill-every", "1", "--duration", "6"
    )
    stdout, stderr = process.communicate(timeout=280)
    assert process.returncode == 0, stderr
    match = LINE.fullmatch(stdout)
    assert match, stdout
    enqueued, lost, doubles, _duplicates, kills = map(int, match.groups())
    assert (lost, doubles) == (0, 0)
    assert enqueued >= 200
    assert kills >= 2


def test_a_lost_task_makes_it_exit_1(tmp_path):
    process = soak(tmp_path, "--tasks", "300", "--workers", "1", "--kill-every", "0")
    database = tmp_path / "sqlite" / "soak.sqlite3"

    def delete_a_waiting_task() -> bool:
        """Behind the queue's back, as an operator's mistake would."""
        if not database.exists():
            return False
        with sqlite3.connect(database, timeout=20) as connection:
            try:
                deleted = connection.execute(
                    "DELETE FROM django_tasks_q_task WHERE id = "
                    "(SELECT id FROM django_tasks_q_task WHERE status = 'READY' LIMIT 1)"
                ).rowcount
            except sqlite3.OperationalError:  # no table yet
                return False
        return deleted == 1

    wait_until(delete_a_waiting_task, timeout=120, interval=0.01, message="a task to delete")
    stdout, stderr = process.communicate(timeout=280)
    assert process.returncode == 1, stderr
    match = LINE.fullmatch(stdout)
    assert match, stdout
    assert match.group(2) == "1"  # lost


def test_the_tally_reads_each_processs_records(tmp_path):
    (tmp_path / "101.txt").write_text("E 0\nE 1\nR 0\nE 2\n")
    # A process killed mid-line, after running task 1 again and recording it.
    (tmp_path / "102.txt").write_text("E 1\nR 1\nE 2\nR 2\nR 2\nE 3\nR")
    executions, recordings = read_records(tmp_path)
    assert executions == Counter({0: 1, 1: 2, 2: 2, 3: 1})
    assert recordings == Counter({0: 1, 1: 1, 2: 2})

    # Task 2's result recorded twice; 3 not successful; 4 successful, never run.
    result = tally("sqlite", range(5), {0, 1, 2, 4}, executions, recordings, kills=3, seconds=9.94)
    assert (result.lost, result.double_recorded, result.duplicate_executions) == (2, 1, 2)
    assert not result.ok
    assert result.line() == (
        "sqlite: enqueued 5, lost 2, double-recorded 1, duplicate executions 2, kills 3, time 9.9 s"
    )
    clean = tally("sqlite", range(2), {0, 1}, Counter({0: 1, 1: 3}), Counter({0: 1, 1: 1}), 0, 1)
    assert clean.ok
    assert clean.duplicate_executions == 2  # at-least-once allows them
