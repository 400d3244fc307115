"""Fixtures for the whole suite: apps on SQLite and PostgreSQL, Redis, SMTP, Chromium.

Tests that need an outside service skip with a reason when it is absent; CI sets
BASTION_FAIL_ON_SKIP=1 so that any skip fails the run.
"""

from __future__ import annotations

import os
import re
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text

from tests.support import services
from tests.support.auth import AuthActions
from tests.support.client import HTTPSClient

pytest_plugins = ["tests.support.browser", "tests.support.mail"]

BACKENDS = ("sqlite", "postgresql")


# --------------------------------------------------------------------------- skips ---
_skipped: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("BASTION_FAIL_ON_SKIP") == "1" and _skipped:
        print(f"\nBASTION_FAIL_ON_SKIP: {len(_skipped)} test(s) skipped:")
        for nodeid in _skipped[:50]:
            print(f"  {nodeid}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# ------------------------------------------------------------------------ databases ---
@pytest.fixture(scope="session")
def pg_base_url() -> str:
    url = os.environ.get("BASTION_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    if not services.pg_reachable(url):
        pytest.skip("PostgreSQL is not reachable at 127.0.0.1:5432")
    return url


@pytest.fixture(scope="session")
def pg_schema_url(pg_base_url: str) -> Iterator[Callable[[], str]]:
    """Make fresh schemas on demand (one per app), dropped at the end of the run."""
    made: list[str] = []

    def make() -> str:
        name = f"t_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        services.pg_execute(pg_base_url, f'CREATE SCHEMA "{name}"')
        made.append(name)
        return services.with_search_path(pg_base_url, name)

    yield make
    for name in made:
        services.pg_execute(pg_base_url, f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def _database_url(backend: str, tmp: Path, request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp / 'bastion.db'}"
    make: Callable[[], str] = request.getfixturevalue("pg_schema_url")
    return make()


def base_config(tmp: Path, database_url: str, **overrides: Any) -> dict[str, Any]:
    if "REDIS_URL" in overrides and "RATELIMIT_STORAGE_OPTIONS" not in overrides:
        # limits' reset() empties every key under its storage prefix: one prefix per test
        # process, or a test starting afresh in one would empty the other's counts.
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        overrides["RATELIMIT_STORAGE_OPTIONS"] = {
            "socket_connect_timeout": 1, "socket_timeout": 1, "key_prefix": f"LIMITS:{worker}"}
    return {
        "ENV_NAME": "testing",
        "DATABASE_URL": database_url,
        "UPLOAD_DIR": str(tmp / "uploads"),
        "OUTBOX_DIR": str(tmp / "outbox"),
        **overrides,
    }


def build_app(config: dict[str, Any], *, migrate: bool = False) -> Flask:
    """An app with its schema in place (create_all, or the real migrations)."""
    from bastion import create_app
    from bastion.auth.services import ensure_roles
    from bastion.extensions import db

    app = create_app(config)
    app.test_client_class = HTTPSClient
    with app.app_context():
        if migrate:
            from flask_migrate import upgrade

            upgrade()
        else:
            db.create_all()
            ensure_roles()
            db.session.commit()
    return app


@pytest.fixture(scope="session", params=BACKENDS)
def _session_app(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Flask]:
    backend = request.param
    tmp = tmp_path_factory.mktemp(f"app-{backend}")
    app = build_app(base_config(tmp, _database_url(backend, tmp, request)))
    app.config["BACKEND"] = backend
    yield app
    from bastion.extensions import db

    with app.app_context():
        db.engine.dispose()


def _wipe(app: Flask) -> None:
    from bastion.extensions import db, limiter

    with app.app_context():
        db.session.remove()
        tables = [t.name for t in reversed(db.metadata.sorted_tables) if t.name != "roles"]
        with db.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # The wipe after one test leaves nothing for the wipe before the next.
                if _pg_touched(conn, tables):
                    _pg_empty(conn, tables)
            else:
                for name in tables:
                    conn.execute(text(f"DELETE FROM {name}"))  # noqa: S608 - fixed names
        limiter.reset()
        # A test that made the store fail leaves Flask-Limiter on its in-memory fallback
        # (until its next health check), whose counts reset() does not clear: the next
        # test's limits would start part spent.
        fallback = getattr(limiter, "_fallback_storage", None)
        if fallback is not None:
            fallback.reset()
        limiter._storage_dead = False


def _pg_touched(conn: Any, tables: list[str]) -> bool:
    """Whether a test left rows, or drew ids a fresh schema would hand out again."""
    rows = " OR ".join(f"EXISTS (SELECT 1 FROM {name})" for name in tables)  # noqa: S608
    used_ids = (
        "EXISTS (SELECT 1 FROM pg_sequences WHERE schemaname = current_schema()"
        " AND sequencename <> 'roles_id_seq' AND last_value IS NOT NULL)"
    )
    return bool(conn.execute(text(f"SELECT {rows} OR {used_ids}")).scalar())


def _pg_empty(conn: Any, tables: list[str]) -> None:
    """Empty the tables and restart their ids, as TRUNCATE ... RESTART IDENTITY would.

    DELETE, children first: on a test's handful of rows it takes a few milliseconds where
    TRUNCATE, which makes new files for every table and index, takes about 25.
    """
    # The audit trail refuses DELETE; the test role owns the table, so it may lift that for
    # this transaction alone (no other connection sees it off).
    guard = "ALTER TABLE audit_events {} TRIGGER audit_events_no_change"
    conn.execute(text(guard.format("DISABLE")))
    for name in tables:
        conn.execute(text(f"DELETE FROM {name}"))  # noqa: S608 - fixed names
    conn.execute(text(guard.format("ENABLE")))
    conn.execute(
        text(
            "SELECT setval(format('%I.%I', schemaname, sequencename)::regclass, start_value,"
            " false) FROM pg_sequences WHERE schemaname = current_schema()"
            " AND sequencename <> 'roles_id_seq' AND last_value IS NOT NULL"
        )
    )


@pytest.fixture
def app(_session_app: Flask) -> Iterator[Flask]:
    """The application on each backend, with empty tables for every test."""
    _wipe(_session_app)
    with _session_app.app_context():
        yield _session_app
    _wipe(_session_app)


@pytest.fixture
def make_app(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Flask]]:
    """Build a one-off app with config overrides (SQLite unless backend= is given)."""
    built: list[Flask] = []

    def make(backend: str = "sqlite", migrate: bool = False, **overrides: Any) -> Flask:
        sub = tmp_path / f"app{len(built)}"
        sub.mkdir()
        app = build_app(
            base_config(sub, _database_url(backend, sub, request), **overrides), migrate=migrate
        )
        built.append(app)
        return app

    yield make
    from bastion.extensions import db

    for app in built:
        with app.app_context():
            db.engine.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> Any:
    return app.test_cli_runner()


@pytest.fixture
def auth(client: FlaskClient) -> AuthActions:
    return AuthActions(client)


@pytest.fixture
def db_session(app: Flask) -> Any:
    from bastion.extensions import db

    return db.session


# ---------------------------------------------------------------------------- redis ---
@pytest.fixture
def public_pages_reused(app: Flask) -> Iterator[None]:
    """Public pages and the API list reused for a minute, as in production (5 s) but never
    expiring within a test; the store emptied before and after."""
    from bastion import pagecache

    app.config["PUBLIC_PAGE_CACHE_SECONDS"] = 60
    pagecache.clear()
    try:
        yield
    finally:
        app.config["PUBLIC_PAGE_CACHE_SECONDS"] = 0
        pagecache.clear()


@pytest.fixture
def listening_port() -> Iterator[int]:
    """A port a socket listens on and never answers: taken, for a server that would bind
    it; a hang, for a client (a Redis that took the connection and says nothing)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis URL plus a unique key prefix; keys are removed afterwards."""
    url = os.environ.get("BASTION_TEST_REDIS", "redis://127.0.0.1:6379/0")
    if not services.redis_reachable(url):
        pytest.skip("Redis is not reachable at 127.0.0.1:6379")
    prefix = f"bastion-test-{uuid.uuid4().hex[:10]}"
    os.environ["BASTION_TEST_REDIS_PREFIX"] = prefix
    yield url
    services.redis_delete_prefix(url, prefix)


# -------------------------------------------------------------------------- helpers ---
CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def csrf_from(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "no CSRF token in page"
    return match.group(1)
