"""The systems the benchmark measures: one entry per system and backend.

Each runs through its driver (``bench/drivers/``) in a subprocess: this
project's drivers in the project's environment, the peers' in
``bench/.venv-peers``, which is made on first use from peers-requirements.txt.
"""

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field

import psycopg
import redis

from bench.drivers.common import (
    DATA,
    REDIS_DB_HUEY,
    REDIS_DB_TASKQ,
    ROOT,
    database_name,
    pg_dsn,
    redis_url,
)

PEERS_VENV = ROOT / "bench" / ".venv-peers"
PEERS_REQUIREMENTS = ROOT / "bench" / "peers-requirements.txt"
ALL_WORKLOADS = ("enqueue_single", "enqueue_bulk", "drain", "latency")


@dataclass(frozen=True)
class System:
    key: str  # what --systems takes
    name: str
    backend: str
    driver: str  # the module under bench.drivers
    database: str | None = None  # the PostgreSQL database it needs, made afresh
    redis_db: int | None = None  # the Redis logical database it has to itself, flushed
    env: dict = field(default_factory=dict)
    peer: bool = False  # runs in the peers' environment
    workloads: tuple = ALL_WORKLOADS

    @property
    def python(self) -> str:
        return str(PEERS_VENV / "bin" / "python") if self.peer else sys.executable

    def prepare(self) -> None:
        """Start from an empty database with the system's tables."""
        if self.database:
            self._admin(f"DROP DATABASE IF EXISTS {self.database}")
            self._admin(f"CREATE DATABASE {self.database}")
        elif self.env.get("BENCH_DATABASE") == "sqlite":
            for path in DATA.glob("taskq.sqlite3*"):
                path.unlink()
        self._flush_redis()
        self.run("setup")

    def clean_up(self) -> None:
        if self.database:
            self._admin(f"DROP DATABASE IF EXISTS {self.database}")
        self._flush_redis()

    def _flush_redis(self) -> None:
        if self.redis_db is not None:
            with redis.Redis.from_url(redis_url(self.redis_db)) as client:
                client.flushdb()

    def _admin(self, statement: str) -> None:
        with psycopg.connect(pg_dsn("postgres"), autocommit=True) as connection:
            connection.execute(statement)

    def run(self, *arguments: str) -> dict | None:
        """Run the driver; its figures, or None for ``setup``. Raises on failure."""
        completed = subprocess.run(
            [self.python, "-m", f"bench.drivers.{self.driver}", *arguments],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **self.env},
            capture_output=True,
            text=True,
        )
        if completed.returncode != 0:
            last = completed.stderr.strip().splitlines()[-1:] or ["(no output)"]
            raise RuntimeError(f"{self.key} {' '.join(arguments)}: {last[0]}")
        return json.loads(completed.stdout) if completed.stdout.strip() else None


SYSTEMS = [
    System(
        "taskq-pg",
        "django-tasks-q",
        "PostgreSQL",
        "taskq",
        database=database_name("taskq"),
        workloads=(*ALL_WORKLOADS, "backlog"),
    ),
    System("taskq-sqlite", "django-tasks-q", "SQLite", "taskq", env={"BENCH_DATABASE": "sqlite"}),
    System(
        "taskq-redis",
        "django-tasks-q",
        "Redis",
        "taskq",
        env={"BENCH_QUEUE": "redis"},
        redis_db=REDIS_DB_TASKQ,
    ),
    System(
        "pgqueuer", "pgqueuer", "PostgreSQL", "pgq", database=database_name("pgqueuer"), peer=True
    ),
    System(
        "django-tasks-db",
        "django-tasks-db",
        "PostgreSQL",
        "django_tasks_db",
        database=database_name("djtasksdb"),
        peer=True,
        workloads=("enqueue_single", "drain", "latency"),  # no batch API
    ),
    System(
        "huey",
        "huey",
        "Redis",
        "huey_redis",
        redis_db=REDIS_DB_HUEY,
        peer=True,
        # Its map() enqueues one task at a time: no batch API.
        workloads=("enqueue_single", "drain", "latency"),
    ),
]


def ensure_peers_venv() -> None:
    """Make the peers' environment, and bring it up to date when the pinned
    requirements change (a stamp file keeps the ones it was made from)."""
    wanted = PEERS_REQUIREMENTS.read_text()
    stamp = PEERS_VENV / "requirements.installed"
    if stamp.exists() and stamp.read_text() == wanted:
        return
    uv = [os.environ["UV"]] if "UV" in os.environ else [shutil.which("uv") or "uv"]
    print(f"Installing the peers into {PEERS_VENV} ...", file=sys.stderr)
    if not (PEERS_VENV / "bin" / "python").exists():
        subprocess.run([*uv, "venv", "-q", "--python", "3.12", str(PEERS_VENV)], check=True)
    subprocess.run(
        [*uv, "pip", "install", "-q", "--python", str(PEERS_VENV / "bin" / "python")]
        + ["-r", str(PEERS_REQUIREMENTS)],
        check=True,
    )
    stamp.write_text(wanted)


def ensure_bytecode(systems: list["System"]) -> None:
    """Compile every environment the systems run in, and this checkout, to
    bytecode, as ``pip install`` does: uv writes no .pyc unless asked, and
    with PYTHONDONTWRITEBYTECODE set (as on this machine) each worker would
    compile its libraries from source at start, which the drain's wall time
    and the idle worker's memory would count. Files already compiled are
    skipped, so this is quick after the first run."""
    pythons = sorted({system.python for system in systems})
    for python in pythons:
        paths = subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        if python == sys.executable:
            paths += [str(ROOT / "django_tasks_q"), str(ROOT / "bench")]
        subprocess.run(
            [python, "-m", "compileall", "-q", "-j", "0", *paths],
            stdout=subprocess.DEVNULL,
            check=False,  # a library's file for another Python version does not compile
        )
