"""Start and stop the two servers under gunicorn, and the database they use.

Both servers run with the same gunicorn settings (the project's ``gunicorn.conf.py``) and
the same worker count; only the application differs.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import requests
from sqlalchemy import create_engine, text

from bastion.api.keys import new_key_entry

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PG_URL = os.environ.get("BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/0")
# What a TLS-terminating proxy in front of Bastion adds; BASTION_PROXY_HOPS=1 trusts it.
PROXY_HEADERS = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "10.0.0.1"}


def gunicorn_conf() -> Path:
    """The project's own settings, the ones production runs with."""
    return ROOT / "gunicorn.conf.py"


def default_workers() -> int:
    """The worker count production gets here: gunicorn.conf.py's (``GUNICORN_WORKERS`` too)."""
    import runpy

    return int(runpy.run_path(str(gunicorn_conf()))["workers"])


def compile_bytecode() -> None:
    """Bytecode for the project, as the image has it (pip compiles what it installs).

    An editable checkout run with PYTHONDONTWRITEBYTECODE=1 would otherwise compile every
    module from source at every worker start, which production never does.
    """
    import compileall

    for package in ("bastion", "flask_deploy_check", "bench"):
        compileall.compile_dir(str(ROOT / package), quiet=1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_exec(sql: str) -> None:
    engine = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(sql))
    finally:
        engine.dispose()


@contextmanager
def pg_schema() -> Iterator[str]:
    """A private schema ``bench_<pid>`` in the shared database, dropped afterwards."""
    name = f"bench_{os.getpid()}"
    _pg_exec(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    _pg_exec(f'CREATE SCHEMA "{name}"')
    try:
        sep = "&" if "?" in PG_URL else "?"
        yield f"{PG_URL}{sep}options={quote(f'-csearch_path={name}')}"
    finally:
        _pg_exec(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def bastion_env(database_url: str) -> dict[str, str]:
    """Production settings with every control on; only the addresses are the bench's."""
    prefix = f"bench{os.getpid()}"
    return {
        "BASTION_ENV": "production",
        "BASTION_SECRET_KEY": secrets.token_urlsafe(48),
        "BASTION_DATABASE_URL": database_url,
        "BASTION_REDIS_URL": REDIS_URL,
        "BASTION_RATELIMIT_KEY_PREFIX": prefix,
        "BASTION_TRUSTED_HOSTS": "127.0.0.1,localhost",
        "BASTION_PUBLIC_URL": "https://localhost",
        "BASTION_PROXY_HOPS": "1",
        "BASTION_UPLOAD_DIR": str(RESULTS / "uploads"),
        # The API's own signing key, made the way `flask --app bastion api new-key` makes it.
        "BASTION_JWT_KEYS": json.dumps([new_key_entry("bench-1")]),
        # Production needs a relay; the bench sends no mail. Nothing listens on this loopback
        # port, so a message would be logged as not sent, never written anywhere.
        "BASTION_MAIL_URL": "smtp://127.0.0.1:9",
        "BASTION_SECURITY_CONTACT": "mailto:security@bastion-bench.org",
    }


@dataclass
class Server:
    name: str
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log_offset(self) -> int:
        return self.log_path.stat().st_size

    def log_since(self, offset: int) -> bytes:
        with self.log_path.open("rb") as fh:
            fh.seek(offset)
            return fh.read()

    def worker_pids(self) -> list[int]:
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        return [int(p) for p in children.read_text().split()] if children.exists() else []

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start(
    name: str,
    app: str,
    env: dict[str, str],
    workers: int,
    *,
    extra_env: dict[str, str] | None = None,
) -> Server:
    """gunicorn with the project's settings; waits until /healthz (or /) answers."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = RESULTS / f"{name}.log"
    log = log_path.open("ab")
    gunicorn = Path(sys.executable).with_name("gunicorn")
    proc = subprocess.Popen(
        [str(gunicorn), "-c", str(gunicorn_conf()), "-b", f"127.0.0.1:{port}", app],
        env={**os.environ, **env, "GUNICORN_WORKERS": str(workers), **(extra_env or {})},
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    server = Server(name, f"http://127.0.0.1:{port}", proc, log_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited at start-up; see {log_path}")
        try:
            if (
                requests.get(f"{server.url}/healthz", headers=PROXY_HEADERS, timeout=2).status_code
                < 500
            ):
                return server
        except requests.RequestException:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"{name} did not answer within 60 s; see {log_path}")
