"""The package's types as a project's mypy sees them."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "tests" / "typing"


def errors(stdout: str, sample: Path) -> dict[int, list[str]]:
    """The errors mypy reported in ``sample``, by line number."""
    reported: dict[int, list[str]] = {}
    for number, error in re.findall(
        rf"^(?:.*/)?{re.escape(sample.name)}:(\d+): error: (.+)$", stdout, re.M
    ):
        reported.setdefault(int(number), []).append(error)
    return reported


def test_mypy_takes_the_calls_the_function_would_take_and_no_other():
    accepted, rejected = SAMPLES / "task_signatures.py", SAMPLES / "rejected_calls.py"
    # One mypy run for both samples: each run loads django-stubs and the
    # package afresh, most of its time.
    checked = subprocess.run(
        [sys.executable, "-m", "mypy", "--follow-imports=silent", str(accepted), str(rejected)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    output = checked.stdout + checked.stderr
    # Each rejected call in task_signatures.py carries a "type: ignore": with
    # warn_unused_ignores, mypy reports an error there if one is accepted.
    assert errors(checked.stdout, accepted) == {}, output
    # "# E: <error>" in rejected_calls.py says the error mypy must report on
    # the next line: a missing or an extra error fails.
    lines = rejected.read_text().splitlines()
    expected = {
        number + 1: [match[1]]
        for number, line in enumerate(lines, start=1)
        if (match := re.fullmatch(r"\s*# E: (.+)", line))
    }
    assert len(expected) == 14
    assert errors(checked.stdout, rejected) == expected, output
    # Both files checked; every error was in rejected_calls.py.
    assert checked.returncode == 1, output
    assert "Found 14 errors in 1 file (checked 2 source files)" in checked.stdout, output
