"""The package's types as a project's mypy sees them."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_task_gives_mypy_the_function_parameters():
    # Each rejected call in the sample carries a "type: ignore": with
    # warn_unused_ignores, mypy fails if one of them is accepted.
    sample = ROOT / "tests" / "typing" / "task_signatures.py"
    checked = subprocess.run(
        [sys.executable, "-m", "mypy", "--follow-imports=silent", str(sample)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
