"""Coppertone as production runs it, for the benchmark: environment, database, servers.

DEBUG off, secrets generated for the run, ALLOWED_HOSTS=127.0.0.1 and private hosts
allowed (so it may call the mock on 127.0.0.1). The database is a fresh SQLite file in
the run's temporary DATA_DIR, or PostgreSQL + Redis when DATABASE_URL and REDIS_URL
are both set (and the run is not a smoke run). No access log under either server, so
the figures are the hub's work, not its logging.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from base64 import urlsafe_b64encode
from pathlib import Path
from typing import Any

from bench.procs import HOST, PYTHON, ROOT, SERVER_CPUS, BenchError, run_json

# A worker per core, as the README and compose.yaml deploy it.
WORKERS = os.cpu_count() or 1
# One process first (the profile, the query count and the cross-process replies run on
# the first), then as deployed, then daphne for comparison.
SERVERS = ("uvicorn", "uvicorn-workers", "daphne")


def uses_external_database(smoke: bool) -> bool:
    return not smoke and bool(os.environ.get("DATABASE_URL")) and bool(os.environ.get("REDIS_URL"))


def environment(workdir: Path, smoke: bool) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    if not uses_external_database(smoke):
        env.pop("DATABASE_URL", None)
        env.pop("REDIS_URL", None)
    (workdir / "static").mkdir(exist_ok=True)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "coppertone.settings",
            "DEBUG": "0",
            "SECURE_SSL_REDIRECT": "0",
            "ALLOWED_HOSTS": HOST,
            "LLM_PRIVATE_HOSTS": "127.0.0.0/8",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "LLM_ENCRYPTION_KEYS": urlsafe_b64encode(secrets.token_bytes(32)).decode(),
            "DATA_DIR": str(workdir / "data"),
            "STATIC_ROOT": str(workdir / "static"),
            # The benchmark is one person sending thousands of turns: lift the per-person limit.
            "LLM_RATE_LIMIT": "1000000/s",
            # The load generator is one person with hundreds of replies at once.
            "LLM_MAX_CONCURRENT_REPLIES": "0",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def database_label(smoke: bool) -> str:
    return "PostgreSQL + Redis" if uses_external_database(smoke) else "SQLite (fresh file)"


def prepare(env: dict[str, str], mock_base_url: str) -> dict[str, Any]:
    """Migrate, then create the person, token, provider settings and session."""
    Path(env["DATA_DIR"]).mkdir(parents=True, exist_ok=True)
    migrate = [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"]
    done = subprocess.run(migrate, cwd=ROOT, env=env, capture_output=True, timeout=600)
    if done.returncode != 0:
        raise BenchError("migrate failed:\n" + done.stderr.decode(errors="replace")[-3000:])
    return run_json([PYTHON, "-m", "bench.seed", mock_base_url], env, timeout=120)


VACUUM = (
    "import django; django.setup(); from django.db import connection; "
    "connection.cursor().execute('VACUUM ANALYZE')"
)


def vacuum(env: dict[str, str]) -> None:
    """VACUUM ANALYZE between sides on PostgreSQL, as autovacuum would in production:
    these machines run PostgreSQL with autovacuum off, and a side that follows one which
    wrote tens of thousands of rows would otherwise read their dead tuples and stale
    statistics on every turn."""
    if env.get("DATABASE_URL", "").startswith("postgres"):
        subprocess.run([PYTHON, "-c", VACUUM], cwd=ROOT, env=env, check=True, timeout=600)


def command(server: str, port: int) -> list[str]:
    app = "coppertone.asgi:application"
    if server in ("uvicorn", "uvicorn-workers"):
        # uvloop + httptools + websockets, as uvicorn[standard] picks by default.
        argv = [
            PYTHON, "-m", "uvicorn", app, "--host", HOST, "--port", str(port),
            "--no-access-log", "--log-level", "warning", "--lifespan", "off",
        ]  # fmt: skip
        if server == "uvicorn-workers":  # as the Dockerfile runs it
            argv += ["--workers", str(WORKERS), "--http", "coppertone.http_protocol:HeaderDeadline"]
        return argv
    if server == "daphne":
        return [PYTHON, "-m", "daphne", "-b", HOST, "-p", str(port), "-v", "0", app]
    raise ValueError(f"unknown server {server!r}")


def cpus(server: str) -> frozenset[int] | None:
    """A one-process server keeps to its core; one with a worker per core takes them all."""
    return None if server.endswith("-workers") else SERVER_CPUS
