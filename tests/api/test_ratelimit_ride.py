"""An API call's revocation read goes to Redis with its rate-limit hit, and stays a check.

``bastion.security.ratelimit_storage`` sends the MGET of a known token's revocation keys
and user stamp in the same pipeline as Flask-Limiter's EVALSHA. These tests hold it to
what it promises: one round trip instead of two, a revocation or a disabled user seen on
the very next call, the limit still counted (also after Redis lost its scripts), values
used only for the same keys in the same request, and no ride on any other store.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from limits.storage import RedisStorage
from redis.connection import AbstractConnection

from bastion.api import revocation, tokens
from bastion.api.keys import new_key_entry
from bastion.extensions import db, limiter
from bastion.models import User, utcnow
from bastion.security import ratelimit_storage
from bastion.security.ratelimit_storage import RideAlongRedisStorage, limiter_uri
from tests.api.conftest import Api
from tests.factories import UserFactory
from tests.ops.processes import ThrowawayRedis

pytestmark = [pytest.mark.redis]


@dataclass
class Rig:
    app: Flask
    access: str
    user_id: int
    redis_url: str

    def call(self, path: str = "/articles") -> Any:
        with self.app.app_context():
            try:
                return Api(self.app.test_client()).call("GET", path, self.access)
            finally:
                db.session.remove()


@pytest.fixture
def make_rig(make_app: Callable[..., Flask], redis_url: str) -> Callable[..., Rig]:
    def make(redis: str = redis_url, **overrides: Any) -> Rig:
        prefix = os.environ["BASTION_TEST_REDIS_PREFIX"]
        app = make_app(
            REDIS_URL=redis, REDIS_PREFIX=prefix, RATELIMIT_KEY_PREFIX=prefix, **overrides
        )
        with app.app_context():
            # Flask-Limiter keeps the first app's key prefix: start from no hits.
            limiter.reset()
            user = UserFactory(password_changed_at=utcnow() - timedelta(days=1))
            rig = Rig(app, tokens.issue_pair(user).access_token, user.id, redis)
            db.session.remove()
        return rig

    return make


@contextmanager
def counted_sends(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    """Every write to a Redis socket: one per command, or one per pipeline."""
    sent: list[bytes] = []
    original = AbstractConnection.send_packed_command

    def send(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        sent.append(command)
        original(self, command, check_health)

    with monkeypatch.context() as patch:
        patch.setattr(AbstractConnection, "send_packed_command", send)
        yield sent


def _warm(rig: Rig) -> None:
    """The first call verifies the token and settles the user's stamp; the next one rides."""
    assert rig.call().status_code == 200
    assert rig.call().status_code == 200


def test_a_known_token_costs_one_round_trip(
    make_rig: Callable[..., Rig], monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = make_rig()
    _warm(rig)
    with counted_sends(monkeypatch) as sent:
        assert rig.call().status_code == 200
    assert len(sent) == 1, sent


def _revoke_the_token(rig: Rig) -> None:
    claims = tokens.decode(rig.access, "access")
    revocation.revoke(f"jti:{claims['jti']}", utcnow() + timedelta(hours=1))


def _disable_the_user(rig: Rig) -> None:
    user = db.session.get(User, rig.user_id)
    assert user is not None
    user.disabled_at = utcnow()
    db.session.commit()


def _change_the_password(rig: Rig) -> None:
    user = db.session.get(User, rig.user_id)
    assert user is not None
    user.password_changed_at = utcnow()
    db.session.commit()


@pytest.mark.asvs("V7.4.1")
@pytest.mark.parametrize("change", [_revoke_the_token, _disable_the_user, _change_the_password])
def test_a_change_is_seen_on_the_next_call(
    make_rig: Callable[..., Rig],
    monkeypatch: pytest.MonkeyPatch,
    change: Callable[[Rig], None],
) -> None:
    rig = make_rig()
    _warm(rig)
    with rig.app.app_context():
        change(rig)
        db.session.remove()
    with counted_sends(monkeypatch) as sent:
        resp = rig.call()
    assert resp.status_code == 401
    assert len(sent) == 1  # what refused it came back with the limit's hit


@pytest.mark.asvs("V2.4.1")
def test_the_limit_is_counted_when_the_read_rides_along(
    make_rig: Callable[..., Rig], monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = make_rig(API_RATE_LIMIT="4 per minute")
    _warm(rig)
    for _ in range(2):
        with counted_sends(monkeypatch) as sent:
            assert rig.call().status_code == 200
        assert len(sent) == 1
    assert rig.call().status_code == 429


@pytest.mark.asvs("V2.4.1")
def test_the_limit_is_counted_after_redis_lost_its_scripts(
    make_rig: Callable[..., Rig],
) -> None:
    """A restarted Redis answers EVALSHA with NOSCRIPT: limits loads the script again."""
    rig = make_rig(API_RATE_LIMIT="4 per minute")
    _warm(rig)
    redis.Redis.from_url(rig.redis_url).script_flush()
    assert rig.call().status_code == 200
    redis.Redis.from_url(rig.redis_url).script_flush()
    assert [rig.call().status_code for _ in range(2)] == [200, 429]


def test_a_redis_on_a_unix_socket_carries_the_read_too(
    make_rig: Callable[..., Rig],
    make_app: Callable[..., Flask],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """redis-py's ``unix://`` URL is ``redis+unix://`` to limits: both must reach it."""
    server = ThrowawayRedis(unix_socket=tmp_path / "redis.sock").start()
    try:
        rig = make_rig(redis=server.url, API_RATE_LIMIT="4 per minute")
        assert (
            rig.app.config["RATELIMIT_STORAGE_URI"] == f"bastion+redis+unix://{server.unix_socket}"
        )
        _warm(rig)
        with counted_sends(monkeypatch) as sent:
            assert rig.call().status_code == 200
        assert len(sent) == 1
        assert [rig.call().status_code for _ in range(2)] == [200, 429]  # counted there
    finally:
        server.stop()
        make_app()  # leave Flask-Limiter's shared instance on a store that exists


def test_values_serve_only_the_same_keys_in_the_same_request_once(
    make_rig: Callable[..., Rig], redis_url: str
) -> None:
    rig = make_rig()
    prefix = os.environ["BASTION_TEST_REDIS_PREFIX"]
    keys = [f"{prefix}:ride:a", f"{prefix}:ride:b"]
    redis.Redis.from_url(redis_url).set(keys[0], b"one")
    storage = limiter.storage
    assert isinstance(storage, RideAlongRedisStorage)

    def ride(then: Callable[[], Any]) -> Any:
        with rig.app.test_request_context("/api/v1/articles"):
            ratelimit_storage.offer(keys)
            assert storage.acquire_entry(f"{prefix}:ride-test", 100, 60)
            return then()

    assert ride(lambda: ratelimit_storage.take(keys)) == [b"one", None]
    assert ride(lambda: ratelimit_storage.take(keys[::-1])) is None
    assert ride(lambda: (ratelimit_storage.take(keys), ratelimit_storage.take(keys))) == (
        [b"one", None],
        None,
    )
    with rig.app.test_request_context("/api/v1/articles"):
        assert ratelimit_storage.take(keys) is None  # another request: nothing offered
        ratelimit_storage.offer(keys)
        assert ratelimit_storage.take(keys) is None  # offered, never sent
    # A store the app did not approve (another app's, in the same process) carries nothing.
    stranger = RideAlongRedisStorage(limiter_uri(redis_url))
    with rig.app.test_request_context("/api/v1/articles"):
        ratelimit_storage.offer(keys)
        assert stranger.acquire_entry(f"{prefix}:ride-test", 100, 60)
        assert ratelimit_storage.take(keys) is None
    with rig.app.app_context():
        assert ratelimit_storage.take(keys) is None  # no request, no ride


@pytest.mark.asvs("V7.4.1")
def test_a_read_that_was_never_taken_dies_with_its_request(make_rig: Callable[..., Rig]) -> None:
    """Requests run inside one app context (a script, a batch job) share ``g``: the values
    must not outlive their request. Flask's plain test client, which keeps ``g``."""
    rig = make_rig()
    _warm(rig)
    with rig.app.app_context():
        client = FlaskClient(rig.app)
        headers = {"Authorization": f"Bearer {rig.access}"}
        # Public: its limit hit carries the token's read, which no check takes.
        assert client.get("/api/v1/openapi.json", headers=headers).status_code == 200
        _revoke_the_token(rig)
        rig.app.extensions.pop("bastion.jwt_verified")  # the next request offers no read
        assert client.get("/api/v1/articles", headers=headers).status_code == 401
        db.session.remove()


def _without_database(url: str) -> str:
    """``redis://host:port/0`` -> ``redis://host:port``: redis-py then takes ``db`` from options."""
    base, _, db = url.rpartition("/")
    return base if db.isdigit() else url


def test_no_ride_unless_the_limiter_reads_the_apps_own_redis_database(
    make_rig: Callable[..., Rig], make_app: Callable[..., Flask], redis_url: str
) -> None:
    app = make_rig().app
    assert app.config["RATELIMIT_STORAGE_URI"] == limiter_uri(redis_url)
    with app.app_context():
        assert ratelimit_storage.enabled()
        # Stock limits storage: cannot carry a read.
        ratelimit_storage.enable(app, RedisStorage(redis_url))
        assert not ratelimit_storage.enabled()
        # Another database in the options (they win over a URL without one): the
        # revocation keys are not there.
        server = _without_database(redis_url)
        ratelimit_storage.enable(app, RideAlongRedisStorage(limiter_uri(server), db=3))
        assert not ratelimit_storage.enabled()
        ratelimit_storage.enable(app, RideAlongRedisStorage(limiter_uri(server), db=0))
        assert ratelimit_storage.enabled()
        ratelimit_storage.enable(app, None)  # rate limiting off
        assert not ratelimit_storage.enabled()
    memory = make_app()
    with memory.app_context():
        assert memory.config["RATELIMIT_STORAGE_URI"].startswith("memory")
        assert not ratelimit_storage.enabled()


@pytest.mark.asvs("V7.4.1")
def test_a_limiter_on_another_database_never_hides_a_revocation(
    make_rig: Callable[..., Rig], monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    # Flask-Limiter merges every app's storage options into its shared instance: undo ours.
    monkeypatch.setattr(limiter, "_storage_options", dict(limiter._storage_options))
    rig = make_rig(
        redis=_without_database(redis_url), RATELIMIT_STORAGE_OPTIONS={"db": 3, "socket_timeout": 1}
    )
    with rig.app.app_context():
        assert not ratelimit_storage.enabled()
    _warm(rig)
    with rig.app.app_context():
        _revoke_the_token(rig)
    assert rig.call().status_code == 401


@pytest.mark.asvs("V9.1.3")
def test_a_token_whose_key_was_removed_is_refused_though_its_read_rides_along(
    make_rig: Callable[..., Rig], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker remembers the token as verified and guesses its keys from that memory
    before the limiter runs; the check itself starts over under the new keyset."""
    rig = make_rig()
    _warm(rig)
    offered: list[list[str]] = []
    offer = ratelimit_storage.offer
    monkeypatch.setattr(ratelimit_storage, "offer", lambda keys: offered.append(keys) or offer(keys))
    rig.app.config["JWT_KEYS"] = json.dumps([new_key_entry("after-removal")])
    rig.app.extensions.pop("bastion.jwt_keys")
    assert rig.call().status_code == 401
    assert offered  # the stale memory did offer the read: only the check decides
    assert rig.call("/me").status_code == 401
