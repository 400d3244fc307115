"""Dependencies failing: PostgreSQL goes away and comes back; Redis dies under a live server."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest
from flask import Flask
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bastion.extensions import db
from bastion.security.access import public
from tests.conftest import base_config, build_app
from tests.factories import PASSWORD, UserFactory
from tests.ops.conftest import SharedState
from tests.ops.processes import Gunicorn, TcpForwarder, ThrowawayRedis, WebClient
from tests.support.auth import csrf_token

T = TypeVar("T")
# Bounded: connect_timeout is 3 s; an outage must be reported well before a client gives up.
MAX_OUTAGE_ANSWER_SECONDS = 8
# How long recovery may take once the service is back: generous, since every attempt on a
# busy machine may hash a password or open new connections; it only bounds a failure.
RECOVERY_SECONDS = 60


# --------------------------------------------------------------------------- PostgreSQL ---
@pytest.fixture
def proxied_app(
    pg_schema_url: Callable[[], str], tmp_path: Path
) -> Iterator[tuple[Flask, TcpForwarder]]:
    """An app whose only way to PostgreSQL is a forwarder the test can switch off."""
    url = make_url(pg_schema_url())
    forwarder = TcpForwarder((url.host or "127.0.0.1", url.port or 5432)).start()
    proxied = url.set(port=forwarder.port).render_as_string(hide_password=False)
    app = build_app(base_config(tmp_path, proxied))

    @public
    def probe() -> dict[str, int]:
        return {"one": int(db.session.scalar(text("SELECT 1")) or 0)}

    app.add_url_rule("/api/v1/probe", "probe", probe)
    with app.app_context():
        UserFactory(username="dora")
    try:
        yield app, forwarder
    finally:
        forwarder.stop()
        with app.app_context():
            db.engine.dispose()


def _timed(fn: Callable[[], T]) -> tuple[T, float]:
    started = time.monotonic()
    result = fn()
    return result, time.monotonic() - started


@pytest.mark.postgres
@pytest.mark.asvs("V16.5.2", "V16.5.1", "V16.5.3")
def test_database_outage_gives_quick_503s_and_recovers_without_restart(
    proxied_app: tuple[Flask, TcpForwarder],
) -> None:
    app, forwarder = proxied_app
    client = app.test_client()
    token = csrf_token(client, "/auth/login")
    signed_in = client.post(
        "/auth/login", data={"username": "dora", "password": PASSWORD, "csrf_token": token}
    )
    assert signed_in.status_code == 302
    assert client.get("/readyz").status_code == 200

    forwarder.stop()  # the database "restarts": every connection drops, none can be made

    probe_client = app.test_client()  # like a kubelet: no cookies
    ready, took = _timed(lambda: probe_client.get("/readyz"))
    assert ready.status_code == 503
    assert took < MAX_OUTAGE_ANSWER_SECONDS
    assert ready.get_json()["checks"]["database"] == "unavailable"

    page, took = _timed(lambda: client.get("/"))
    assert took < MAX_OUTAGE_ANSWER_SECONDS
    assert page.status_code == 503
    assert page.headers["Retry-After"] == "5"
    assert b"temporarily unavailable" in page.data
    assert b"OperationalError" not in page.data
    assert b"psycopg" not in page.data

    api, took = _timed(lambda: client.get("/api/v1/probe"))
    assert took < MAX_OUTAGE_ANSWER_SECONDS
    assert api.status_code == 503
    assert api.mimetype == "application/problem+json"
    assert api.get_json()["status"] == 503
    assert api.headers["Retry-After"] == "5"

    forwarder.start()  # the database is back; the app is the same process, never restarted

    deadline = time.monotonic() + RECOVERY_SECONDS
    while probe_client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "the app did not recover after the database returned"
        time.sleep(0.2)
    assert client.get("/api/v1/probe").get_json() == {"one": 1}
    # The session made before the outage still works: nothing was lost.
    resp = client.get("/auth/login")
    assert resp.status_code == 302


@pytest.mark.postgres
@pytest.mark.asvs("V16.5.2")
def test_database_that_never_answers_is_a_bounded_503_not_a_hang(
    proxied_app: tuple[Flask, TcpForwarder],
) -> None:
    app, forwarder = proxied_app
    client = app.test_client()
    assert client.get("/readyz").status_code == 200
    forwarder.stop()
    forwarder.start(blackhole=True)  # connections are accepted, nothing ever comes back

    ready, took = _timed(lambda: client.get("/readyz"))
    assert ready.status_code == 503
    assert took < MAX_OUTAGE_ANSWER_SECONDS
    api, took = _timed(lambda: client.get("/api/v1/probe"))
    assert api.status_code == 503
    assert took < MAX_OUTAGE_ANSWER_SECONDS

    forwarder.stop()
    forwarder.start()
    deadline = time.monotonic() + RECOVERY_SECONDS
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "the app did not recover after the partition"
        time.sleep(0.2)


# -------------------------------------------------------------------------------- Redis ---
@contextmanager
def _site_on_redis(
    shared_state: SharedState, tmp: Path, *, through_forwarder: bool = False
) -> Iterator[tuple[Gunicorn, ThrowawayRedis, TcpForwarder | None]]:
    """A one-worker site on a private Redis, reached directly or through a forwarder."""
    redis = ThrowawayRedis().start()
    forwarder = TcpForwarder(("127.0.0.1", redis.port)).start() if through_forwarder else None
    url = f"redis://127.0.0.1:{forwarder.port}/0" if forwarder else redis.url
    server = Gunicorn(tmp, shared_state.env(BASTION_REDIS_URL=url), workers=1, threads=2)
    try:
        server.start()
        yield server, redis, forwarder
    finally:
        server.stop()
        if forwarder is not None:
            forwarder.stop()
        redis.stop()


@pytest.fixture(scope="module")
def redis_fault(
    shared_state: SharedState, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Gunicorn, ThrowawayRedis]]:
    with _site_on_redis(shared_state, tmp_path_factory.mktemp("redis-fault")) as (server, redis, _):
        yield server, redis


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.asvs("V16.5.2", "V16.5.3", "V2.4.1", "V16.3.4")
def test_redis_down_keeps_reads_open_and_closes_logins(
    redis_fault: tuple[Gunicorn, ThrowawayRedis],
) -> None:
    server, redis = redis_fault
    web = WebClient(server.url, client_ip="198.51.100.7")
    assert web.login("bob", PASSWORD).status_code == 302

    redis.stop()

    reader = WebClient(server.url, client_ip="198.51.100.8")
    for _ in range(3):
        assert reader.get("/").status_code == 200  # reads fail open
    assert web.get("/auth/login").status_code == 302  # a signed-in session keeps working

    started = time.monotonic()
    refused = WebClient(server.url, client_ip="198.51.100.9").login("bob", PASSWORD)
    assert time.monotonic() - started < MAX_OUTAGE_ANSWER_SECONDS
    assert refused.status_code == 503  # credential checks fail closed
    assert refused.headers["Retry-After"] == "30"
    assert "Signing in is paused" in refused.text
    assert WebClient(server.url).get("/readyz").status_code == 503

    log = server.output()
    assert "rate-limit store unreachable" in log
    assert "falling back to in-memory storage" in log

    redis.start()  # same port, as after a restart
    deadline = time.monotonic() + RECOVERY_SECONDS
    while True:
        resp = WebClient(server.url, client_ip="198.51.100.10").login("bob", PASSWORD)
        if resp.status_code == 302:
            break
        assert time.monotonic() < deadline, "logins did not resume after Redis returned"
        time.sleep(0.3)


def _api_in_use(server: Gunicorn, client_ip: str) -> tuple[WebClient, dict[str, str]]:
    """A client with a fresh JWT it has used a few times: the first call verifies the
    token, the next ones send its revocation read with the limiter's hit."""
    api = WebClient(server.url, client_ip=client_ip)
    issued = api.post("/api/v1/auth/token", json={"username": "bob", "password": PASSWORD})
    assert issued.status_code == 200, issued.text
    bearer = {"Authorization": f"Bearer {issued.json()['access_token']}"}
    for _ in range(3):
        assert api.get("/api/v1/articles", headers=bearer).status_code == 200
    return api, bearer


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.asvs("V16.5.3", "V7.4.1")
def test_api_tokens_through_a_redis_outage_and_restart(
    redis_fault: tuple[Gunicorn, ThrowawayRedis],
) -> None:
    """The revocation read rides with the limiter's hit: when Redis dies it must not fail
    open, and after a restart (no scripts loaded) the API must answer again by itself."""
    server, redis = redis_fault
    api, bearer = _api_in_use(server, "198.51.100.20")

    redis.stop()
    down, seconds = _timed(lambda: api.get("/api/v1/articles", headers=bearer))
    assert seconds < MAX_OUTAGE_ANSWER_SECONDS
    assert down.status_code == 503, down.text  # revocation cannot be checked: closed
    assert down.headers["Content-Type"].startswith("application/problem+json")
    assert down.headers["Retry-After"] == "30"
    assert "redis unavailable" in server.output()
    # The answer is part of the contract: the API's document lists it for the operation.
    documented = api.get("/api/v1/openapi.json").json()["paths"]["/api/v1/articles"]["get"]
    assert "Retry-After" in documented["responses"]["503"]["headers"]

    redis.start()
    deadline = time.monotonic() + RECOVERY_SECONDS
    while api.get("/api/v1/articles", headers=bearer).status_code != 200:
        assert time.monotonic() < deadline, "the API did not resume after Redis returned"
        time.sleep(0.3)


@pytest.fixture(scope="module")
def redis_blackhole(
    shared_state: SharedState, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Gunicorn, TcpForwarder]]:
    tmp = tmp_path_factory.mktemp("redis-blackhole")
    with _site_on_redis(shared_state, tmp, through_forwarder=True) as (server, _, forwarder):
        assert forwarder is not None
        yield server, forwarder


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.asvs("V16.5.3", "V7.4.1")
def test_a_redis_that_never_answers_is_a_bounded_503_for_api_tokens(
    redis_blackhole: tuple[Gunicorn, TcpForwarder],
) -> None:
    """Connections accepted, nothing answered (a partition): the limiter's hit and the
    revocation read each give up after their socket timeout, and the token is refused."""
    server, forwarder = redis_blackhole
    api, bearer = _api_in_use(server, "198.51.100.30")

    forwarder.stop()
    forwarder.start(blackhole=True)
    for _ in range(2):
        down, seconds = _timed(lambda: api.get("/api/v1/articles", headers=bearer))
        assert seconds < MAX_OUTAGE_ANSWER_SECONDS
        assert down.status_code == 503, down.text
        assert down.headers["Retry-After"] == "30"
