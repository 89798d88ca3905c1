"""The package's types as a project's mypy sees them."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "tests" / "typing"


def mypy(sample: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--follow-imports=silent", str(sample)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def test_task_gives_mypy_the_function_parameters():
    # Each rejected call in the sample carries a "type: ignore": with
    # warn_unused_ignores, mypy fails if one of them is accepted.
    checked = mypy(SAMPLES / "task_signatures.py")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_mypy_rejects_calls_the_function_would_not_take():
    sample = SAMPLES / "rejected_calls.py"
    lines = sample.read_text().splitlines()
    # "# E: <error>" says the error mypy must report on the next line.
    expected = {
        number + 1: [match[1]]
        for number, line in enumerate(lines, start=1)
        if (match := re.fullmatch(r"\s*# E: (.+)", line))
    }
    assert len(expected) == 14
    checked = mypy(sample)
    reported: dict[int, list[str]] = {}
    for number, error in re.findall(
        rf"^(?:.*/)?{re.escape(sample.name)}:(\d+): error: (.+)$", checked.stdout, re.M
    ):
        reported.setdefault(int(number), []).append(error)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert reported == expected, checked.stdout
