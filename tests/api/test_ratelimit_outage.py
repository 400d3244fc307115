"""After a Redis outage, credential attempts are counted in Redis again before they pass.

While Redis is down, Flask-Limiter counts in each worker's memory and the credential
endpoints answer 503 (``bastion.observability.outages``). Once Redis answers again, the
fail-closed hook lets sign-ins through at once, but Flask-Limiter looks at its store again
only every 1 to 32 seconds: attempts in between would be counted by one worker alone, so N
workers would allow N times the limit.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from flask import Flask
from redis.exceptions import ConnectionError as RedisConnectionError

from bastion.extensions import limiter
from bastion.security.ratelimit_storage import RideAlongRedisStorage

pytestmark = [pytest.mark.redis]


@pytest.fixture
def outage(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, bool]]:
    """Makes the limiter's Redis storage fail while ``state["down"]`` is true."""
    state = {"down": False}
    acquire = RideAlongRedisStorage.acquire_entry
    check = RideAlongRedisStorage.check

    def failing_acquire(self: RideAlongRedisStorage, *args: Any, **kwargs: Any) -> bool:
        if state["down"]:
            raise RedisConnectionError("Connection refused")
        return acquire(self, *args, **kwargs)

    def failing_check(self: RideAlongRedisStorage) -> bool:
        return not state["down"] and check(self)

    monkeypatch.setattr(RideAlongRedisStorage, "acquire_entry", failing_acquire)
    monkeypatch.setattr(RideAlongRedisStorage, "check", failing_check)
    yield state
    limiter._storage_dead = False  # the limiter is shared by every app of the test run


@pytest.mark.asvs("V6.3.1", "V2.4.1")
def test_sign_ins_right_after_an_outage_are_counted_in_redis(
    make_app: Callable[..., Flask], redis_url: str, outage: dict[str, bool]
) -> None:
    prefix = os.environ["BASTION_TEST_REDIS_PREFIX"]
    app = make_app(
        REDIS_URL=redis_url, REDIS_PREFIX=prefix, RATELIMIT_KEY_PREFIX=prefix,
        WTF_CSRF_ENABLED=False,
    )
    with app.app_context():
        limiter.reset()
    client = app.test_client()
    reader = {"REMOTE_ADDR": "198.51.100.1"}
    outage["down"] = True
    assert client.get("/", environ_base=reader).status_code == 200  # reads fail open
    assert client.get("/", environ_base=reader).status_code == 200  # still down at the check
    outage["down"] = False  # Redis is back

    guesser = "198.51.100.77"
    store = redis.Redis.from_url(redis_url)
    pattern = f"*/{guesser}/auth.login/*"  # Flask-Limiter keeps the first app's key prefix
    for key in store.scan_iter(pattern):
        store.delete(key)
    for i in range(3):
        resp = client.post(
            "/auth/login",
            data={"username": f"nobody{i}", "password": "wrong password"},
            environ_base={"REMOTE_ADDR": guesser},
        )
        assert resp.status_code == 200  # a failed sign-in, not a 503
    # Every attempt is in the shared store, where the other workers count too.
    keys = list(store.scan_iter(pattern))
    assert len(keys) == 1
    assert store.llen(keys[0]) == 3
    store.delete(*keys)
