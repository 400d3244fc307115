"""Flask-Limiter's Redis storage, able to carry one read in the round trip that counts a hit.

Why: an API call with a bearer token went to Redis twice, once for Flask-Limiter's EVALSHA
before the view and once for the MGET of the token's revocation keys and its user's stamp
inside it. Each round trip costs a request as much CPU as a whole security header pass
(pool, socket, a sleep and a wake-up). ``limits`` has no way to batch a foreign read with a
hit, so this subclass of its ``RedisStorage`` (registered for ``bastion+redis://``, which
is how the settings name the limiter's Redis) sends both in one pipeline when the request
offered a read.

What keeps it safe: the values are only ever used by ``take``, in the same request, once, for
exactly the keys that were read, from the same Redis server and database the caller would
have asked (``enable`` compares the two clients' connections). Which keys to offer is a guess
made before the limiter runs (``bastion.api.auth.offer_state_read``); a wrong guess only
means ``take`` returns None and the caller makes its own MGET. The hit itself is counted
by ``limits``' own Lua script, as before.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import cast

from flask import Flask, current_app, has_request_context, request
from limits.storage import RedisStorage
from redis import Redis
from redis.exceptions import NoScriptError

SCHEME_PREFIX = "bastion+"
_APPROVED_STORE = "bastion.ratelimit_ride_store"  # in app.extensions
# In the WSGI environ, which belongs to one request; ``g`` belongs to an app context, which
# a test or a command may keep around several requests.
_RIDE = "bastion.ratelimit_ride"


@dataclass(slots=True)
class Ride:
    """A read offered for the request's first limit hit, and its answer once sent."""

    keys: list[str]
    values: list[bytes | None] | None = None
    sent: bool = False


class RideAlongRedisStorage(RedisStorage):
    """``limits``' Redis storage; the moving window's first hit of a request can carry a read."""

    # limits registers the schemes a subclass names here.
    STORAGE_SCHEME = [
        f"{SCHEME_PREFIX}redis",
        f"{SCHEME_PREFIX}rediss",
        f"{SCHEME_PREFIX}redis+unix",
    ]

    def __init__(self, uri: str, **options: float | str | bool | None) -> None:
        # No CLIENT SETINFO on connect, as for the app's own client (bastion.redis_client):
        # the deployment's Redis ACL does not allow it.
        options.setdefault("driver_info", None)
        super().__init__(uri.removeprefix(SCHEME_PREFIX), **options)  # type: ignore[arg-type]

    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        ride = _pending(self)
        if ride is None:
            return super().acquire_entry(key, limit, expiry, amount)
        # One try: after an error the request's next limit goes alone. (If redis-py retries
        # the pipeline after a lost answer, the hit may count twice: stricter, never looser.)
        ride.sent = True
        client = cast(Redis, self.get_connection())
        with client.pipeline(transaction=False) as pipe:
            # EVALSHA directly: a Script object in a pipeline costs a SCRIPT EXISTS round trip.
            pipe.evalsha(  # type: ignore[no-untyped-call]
                self.lua_acquire_moving_window.sha,
                1,
                self.prefixed_key(key),
                time.time(),
                limit,
                expiry,
                amount,
            )
            pipe.mget(ride.keys)
            acquired, values = pipe.execute(raise_on_error=False)
        if isinstance(values, list) and len(values) == len(ride.keys):
            ride.values = values
        if isinstance(acquired, NoScriptError):  # Redis restarted: limits loads the script
            return super().acquire_entry(key, limit, expiry, amount)
        if isinstance(acquired, Exception):
            raise acquired
        return bool(acquired)


def limiter_uri(redis_url: str) -> str:
    """The limiter's storage URI for the app's own Redis (redis-py's ``unix://`` is
    ``redis+unix://`` to limits)."""
    if redis_url.startswith("unix://"):
        redis_url = "redis+" + redis_url
    return SCHEME_PREFIX + redis_url


def _server_of(client: Redis) -> tuple[object, ...]:
    """Which Redis server and database a client talks to, and as whom."""
    pool = client.connection_pool
    kw = pool.connection_kwargs
    return (
        pool.connection_class,
        kw.get("host"),
        kw.get("port"),
        kw.get("path"),
        kw.get("db", 0),
        kw.get("username"),
    )


def enable(app: Flask, storage: object | None) -> None:
    """Allow rides only when the limiter's store is this class and talks to the very server
    and database the app's own client reads (``RATELIMIT_STORAGE_OPTIONS`` can move it
    elsewhere, a ``db`` for one), and only through that store (``_pending``), whatever else
    shares the process. ``storage`` is None when the app has rate limiting off."""
    from bastion.redis_client import get_redis

    approved = False
    if app.config.get("REDIS_URL") and isinstance(storage, RideAlongRedisStorage):
        with app.app_context():
            approved = _server_of(cast(Redis, storage.get_connection())) == _server_of(get_redis())
    app.extensions[_APPROVED_STORE] = storage if approved else None


def enabled() -> bool:
    return current_app.extensions.get(_APPROVED_STORE) is not None


def offer(keys: list[str]) -> None:
    """Before the limiter runs: read ``keys`` along with the request's first limit hit."""
    if enabled():
        request.environ[_RIDE] = Ride(list(keys))


def take(keys: list[str]) -> list[bytes | None] | None:
    """The values of exactly ``keys`` if they came with this request's limit hit, once."""
    if not has_request_context():
        return None
    ride: Ride | None = request.environ.pop(_RIDE, None)
    if ride is None or ride.values is None or ride.keys != keys:
        return None
    return ride.values


def _pending(storage: RideAlongRedisStorage) -> Ride | None:
    """The request's unsent ride, if ``storage`` is the store its app approved."""
    if not has_request_context():
        return None
    ride: Ride | None = request.environ.get(_RIDE)
    if ride is None or ride.sent or current_app.extensions.get(_APPROVED_STORE) is not storage:
        return None
    return ride
