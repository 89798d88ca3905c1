"""``python -m bench.soak``: see the package's docstring, or --help."""

import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis

from bench.drivers.common import ROOT
from bench.soak import parse_arguments


def prepare(store: str, options, data: Path) -> None:
    """A fresh start: no records, logs or SQLite file of an earlier run, an
    empty PostgreSQL database or Redis logical database."""
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    if store in ("postgres", "pgbouncer"):
        url = urlsplit(options.postgres)
        name = url.path.lstrip("/")
        admin = urlunsplit(url._replace(path="/postgres"))
        with psycopg.connect(admin, autocommit=True) as connection:
            # FORCE: PgBouncer may still hold connections to it.
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            connection.execute(f'CREATE DATABASE "{name}"')
    elif store == "redis":
        with redis.Redis.from_url(options.redis) as client:
            client.flushdb()


def main() -> None:
    options = parse_arguments()
    failed = False
    for store in options.stores.split(","):
        data = Path(options.data_dir).resolve() / store
        prepare(store, options, data)
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "DJANGO_SETTINGS_MODULE": "bench.sites.soak.settings",
            "SOAK_STORE": store,
            "SOAK_DATA": str(data),
            "SOAK_POSTGRES": options.postgres,
            "SOAK_PGBOUNCER": options.pgbouncer,
            "SOAK_REDIS": options.redis,
        }
        # The store's run prints its line itself; its errors go to stderr.
        returncode = subprocess.run(
            [sys.executable, "-m", "bench.soak.store", *sys.argv[1:]], cwd=ROOT, env=env
        ).returncode
        if returncode != 0:
            failed = True
            if returncode != 1:  # 1: the line says what was lost
                print(f"{store}: the soak failed (exit code {returncode})", file=sys.stderr)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
