"""Check what ``uv build`` put in dist/: python .ci/check_dist.py dist

The sdist holds only files git tracks (the package, the tests and the test
project they build on, the docs, the README and friends), never the
benchmark's drivers (but the soak, which a test runs, and what it imports),
the lock file or CI's scripts; the wheel holds the package (templates, static
files, migrations, py.typed included) and its metadata, nothing else. The
sdist's tests must find all they import in it: pytest collects them from the
unpacked sdist, with this checkout off the path (the dev venv's editable
install puts it there). Prints one line per problem and exits 1 if any.
"""

import subprocess
import sys
import tarfile
import tempfile
import zipfile
from email.parser import HeaderParser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Tracked files the sdist must hold (directories: every tracked file in them).
SDIST_HOLDS = [
    "django_tasks_q/",
    "tests/",
    "testproject/",
    "docs/",
    "manage.py",
    "bench/report.py",  # tests/test_bench_report.py
    "bench/soak/",  # tests/test_soak.py, with what it imports:
    "bench/sites/__init__.py",
    "bench/sites/soak/",
    "bench/drivers/__init__.py",
    "bench/drivers/common.py",
    ":(glob)*.md",  # README, CHANGELOG, CONTRIBUTING, SECURITY
    "mkdocs.yml",
    "LICENSE",
    "pyproject.toml",
]
# The benchmark's drivers and sites (but the soak's), its runner, CI, the lock.
SDIST_LEAVES_OUT = [
    "bench/drivers/taskq.py",
    "bench/drivers/pgq",
    "bench/drivers/huey",
    "bench/drivers/django_tasks_db.py",
    "bench/sites/taskq/",
    "bench/sites/djtasksdb/",
    "bench/__main__.py",
    ".ci/",
    "uv.lock",
]
WHEEL_METADATA = {
    "License-Expression": ["BSD-3-Clause"],
    "License-File": ["LICENSE"],
}
WHEEL_CLASSIFIERS = ["Typing :: Typed", "Framework :: Django"]


def tracked(*paths: str) -> set[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--", *paths], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return set(listed.stdout.splitlines())


def check_sdist(path: Path) -> list[str]:
    with tarfile.open(path) as archive:
        top = archive.getnames()[0].split("/")[0]
        names = {
            member.name.removeprefix(f"{top}/")
            for member in archive.getmembers()
            if member.isfile()
        }
    problems = [f"sdist lacks {name}" for name in sorted(tracked(*SDIST_HOLDS) - names)]
    # .gitignore: hatchling always adds it; PKG-INFO: the metadata.
    untracked = names - tracked() - {"PKG-INFO", ".gitignore"}
    problems += [f"sdist holds {name}, which git does not track" for name in sorted(untracked)]
    problems += [
        f"sdist holds {name}"
        for name in sorted(names)
        if any(name.startswith(prefix) for prefix in SDIST_LEAVES_OUT)
    ]
    return problems


# Run in the unpacked sdist: pytest without this checkout on sys.path.
COLLECT = f"""
import os, sys
sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != {str(ROOT)!r}]
import pytest
sys.exit(pytest.main(["-q", "--collect-only", "-n", "0", "-p", "no:cacheprovider"]))
"""


def check_sdist_tests(path: Path) -> list[str]:
    with tempfile.TemporaryDirectory() as directory, tarfile.open(path) as archive:
        archive.extractall(directory, filter="data")
        (unpacked,) = Path(directory).iterdir()
        collected = subprocess.run(
            [sys.executable, "-c", COLLECT], cwd=unpacked, capture_output=True, text=True
        )
    if collected.returncode == 0:
        return []
    output = (collected.stdout + collected.stderr).splitlines()[-20:]  # the error at its end
    return ["the sdist's tests do not collect from it:", *output]


def check_wheel(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        info = next(name.split("/")[0] for name in names if name.endswith(".dist-info/METADATA"))
        metadata = HeaderParser().parsestr(archive.read(f"{info}/METADATA").decode())
    problems = [f"wheel lacks {name}" for name in sorted(tracked("django_tasks_q/") - names)]
    problems += [
        f"wheel holds {name}"
        for name in sorted(names)
        if not name.startswith(("django_tasks_q/", f"{info}/"))
    ]
    if f"{info}/licenses/LICENSE" not in names:
        problems.append("wheel lacks the LICENSE in its metadata")
    for field, values in WHEEL_METADATA.items():
        if metadata.get_all(field) != values:
            problems.append(f"wheel's {field} is {metadata.get_all(field)}, not {values}")
    classifiers = metadata.get_all("Classifier") or []
    problems += [f"wheel lacks classifier {c}" for c in WHEEL_CLASSIFIERS if c not in classifiers]
    return problems


def main(dist: Path) -> int:
    sdists, wheels = list(dist.glob("*.tar.gz")), list(dist.glob("*.whl"))
    if len(sdists) != 1 or len(wheels) != 1:
        print(f"{dist} should hold one sdist and one wheel: {sdists + wheels}")
        return 1
    problems = check_sdist(sdists[0]) + check_sdist_tests(sdists[0]) + check_wheel(wheels[0])
    for problem in problems:
        print(problem)
    if not problems:
        print(f"{sdists[0].name} and {wheels[0].name} hold what they should")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
