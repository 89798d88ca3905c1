"""``manage.py demo`` as the README runs it (``uv run --no-dev``): with only the
package's runtime dependencies importable, it serves the site, runs the tasks
the site enqueues, and prints an admin login that works.

The demo runs in a copy of the test project (its SQLite file lands there),
with a ``sitecustomize`` on PYTHONPATH that makes every module of a
distribution outside ``django-tasks-q``'s runtime dependencies fail to import,
in the demo and in the worker it starts.
"""

import http.cookiejar
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.parse
import urllib.request
from importlib.metadata import distribution, packages_distributions

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .conftest import ROOT, wait_until

RUNTIME_ONLY = """
import sys

BLOCKED = frozenset({blocked!r})


class RuntimeOnly:
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (a dev dependency)", name=name)
        return None


sys.meta_path.insert(0, RuntimeOnly)
"""


def runtime_distributions(name: str = "django-tasks-q") -> set[str]:
    """``name`` and what it requires, without extras, all the way down."""
    found: set[str] = set()
    todo = [name]
    while todo:
        dist = canonicalize_name(todo.pop())
        if dist not in found:
            found.add(dist)
            for line in distribution(dist).requires or []:
                requirement = Requirement(line)
                if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                    todo.append(requirement.name)
    return found


def dev_only_modules() -> set[str]:
    runtime = runtime_distributions()
    return {
        module
        for module, dists in packages_distributions().items()
        if not {canonicalize_name(dist) for dist in dists} & runtime
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(opener, url: str, data: dict | None = None) -> tuple[str, str]:
    """The page at ``url`` (POSTing ``data`` with the CSRF token): its final URL and text."""
    if data is not None:
        token = next(c.value for c in opener.cookiejar if c.name == "csrftoken")
        data = urllib.parse.urlencode({**data, "csrfmiddlewaretoken": token}).encode()
    with opener.open(url, data, timeout=30) as response:
        return response.url, response.read().decode()


def answers(opener, url: str) -> bool:
    try:
        get(opener, url)
    except OSError:
        return False
    return True


def test_demo_runs_on_runtime_dependencies_and_prints_the_admin_login(tmp_path):
    blocked = dev_only_modules()
    assert {"dj_database_url", "psycopg", "pytest", "redis"} <= blocked  # the dev group's
    assert "django" not in blocked and "croniter" not in blocked
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    (site_dir / "sitecustomize.py").write_text(RUNTIME_ONLY.format(blocked=sorted(blocked)))
    project = tmp_path / "project"
    shutil.copytree(
        ROOT / "testproject",
        project / "testproject",
        ignore=shutil.ignore_patterns("*.sqlite3*", "__pycache__"),
    )
    shutil.copy(ROOT / "manage.py", project)
    port = free_port()
    out, err = tmp_path / "demo.out", tmp_path / "demo.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        demo = subprocess.Popen(
            [sys.executable, "manage.py", "demo", f"127.0.0.1:{port}"],
            cwd=project,
            env={
                "PATH": "/usr/bin:/bin",
                "PYTHONPATH": str(site_dir),
                "PYTHONUNBUFFERED": "1",
                "DJANGO_SETTINGS_MODULE": "testproject.settings",
            },
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
    try:
        opener = urllib.request.build_opener()
        opener.cookiejar = http.cookiejar.CookieJar()
        opener.add_handler(urllib.request.HTTPCookieProcessor(opener.cookiejar))
        site = f"http://127.0.0.1:{port}/"
        wait_until(lambda: answers(opener, site) or demo.poll() is not None, message="the site")
        assert demo.poll() is None, err.read_text()
        admin_url, user, password = re.search(
            r'^The admin: (\S+) \(user "(\w+)", password "(\w+)"\)$', out.read_text(), re.M
        ).groups()
        assert admin_url == f"{site}admin/"
        assert f"The demo site: {site}\n" in out.read_text()

        get(opener, f"{admin_url}login/")
        url, page = get(
            opener, f"{admin_url}login/?next=/admin/", {"username": user, "password": password}
        )
        assert url == admin_url, page
        assert "Site administration" in page

        get(opener, site, None)
        get(opener, f"{site}enqueue/", {"kind": "add"})
        wait_until(
            lambda: re.search(
                r'class="SUCCESSFUL">SUCCESSFUL</td><td>1</td>\s*<td>5</td>', get(opener, site)[1]
            ),
            message="add(2, 3) run by the demo's worker",
        )
    finally:
        if demo.poll() is None:
            demo.send_signal(signal.SIGINT)  # CONTROL-C
        try:
            returncode = demo.wait(timeout=60)
        finally:
            try:
                os.killpg(demo.pid, signal.SIGKILL)  # the worker, if it outlived the demo
            except ProcessLookupError:
                pass
    assert returncode == 0, err.read_text()
    assert "Traceback" not in err.read_text(), err.read_text()
    assert "stopped" in err.read_text()  # the worker's last line
    assert (project / "testproject" / "db.sqlite3").exists()
