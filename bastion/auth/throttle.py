"""Sign-in throttling: growing delays per account and per client address.

Each failure bumps two counters, one for the account (or the unknown name typed) and one for
the client IP. Past a free allowance the next attempt must wait ``BASE * 2**(n - free)``
seconds, capped at ``MAX``. Unlike a lockout, the wait ends on its own, so an attacker cannot
keep the real owner out for long, while guessing becomes far too slow to pay off. Counters
are forgotten after ``LOGIN_THROTTLE_FORGET_SECONDS`` without failures, and the account
counter is cleared by a successful sign-in.

Storage is Redis when ``BASTION_REDIS_URL`` is set (shared by all instances, expiring keys)
and otherwise the ``login_throttles`` table. Flask-Limiter offers fixed quotas, not delays
that grow with each failure, hence this small module. The API token endpoint uses the same
three functions.
"""

from __future__ import annotations

import time
from typing import Protocol

from flask import current_app
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from bastion.extensions import db
from bastion.models import LoginThrottle, utcnow
from bastion.models.base import affected_rows


class _Store(Protocol):
    def get(self, key: str) -> tuple[int, float]: ...
    def bump(self, key: str) -> None: ...
    def clear(self, key: str) -> None: ...


class _DatabaseStore:
    def get(self, key: str) -> tuple[int, float]:
        row = db.session.scalar(select(LoginThrottle).where(LoginThrottle.key == key))
        if row is None:
            return 0, 0.0
        return row.failures, row.last_failure_at.timestamp()

    def bump(self, key: str) -> None:
        forget = current_app.config["LOGIN_THROTTLE_FORGET_SECONDS"]
        now = utcnow()
        row = db.session.scalar(select(LoginThrottle).where(LoginThrottle.key == key))
        if row is not None and (now - row.last_failure_at).total_seconds() > forget:
            row.failures = 0
        # One UPDATE ... failures + 1 keeps concurrent failures from being lost.
        done = affected_rows(db.session.execute(
            update(LoginThrottle)
            .where(LoginThrottle.key == key)
            .values(failures=LoginThrottle.failures + 1, last_failure_at=now)
        ))
        if not done:
            db.session.add(LoginThrottle(key=key, failures=1, last_failure_at=now))
        try:
            db.session.commit()
        except IntegrityError:  # another request inserted the row first
            db.session.rollback()
            self.bump(key)

    def clear(self, key: str) -> None:
        db.session.execute(delete(LoginThrottle).where(LoginThrottle.key == key))
        db.session.commit()


class _RedisStore:
    def __init__(self) -> None:
        from bastion.redis_client import get_redis

        self.redis = get_redis()
        self.prefix = f"{current_app.config['RATELIMIT_KEY_PREFIX']}:throttle:"

    def get(self, key: str) -> tuple[int, float]:
        data: dict[bytes, bytes] = self.redis.hgetall(self.prefix + key)  # type: ignore[assignment]
        if not data:
            return 0, 0.0
        return int(data.get(b"n", 0)), float(data.get(b"t", 0))

    def bump(self, key: str) -> None:
        name = self.prefix + key
        pipe = self.redis.pipeline()
        pipe.hincrby(name, "n", 1)
        pipe.hset(name, "t", repr(time.time()))
        pipe.expire(name, current_app.config["LOGIN_THROTTLE_FORGET_SECONDS"])
        pipe.execute()

    def clear(self, key: str) -> None:
        self.redis.delete(self.prefix + key)


def _store() -> _Store:
    return _RedisStore() if current_app.config.get("REDIS_URL") else _DatabaseStore()


def _keys(login: str, ip: str) -> list[tuple[str, int]]:
    from bastion.auth.services import canonical_username, find_login_user

    cfg = current_app.config
    # One counter per account whether it is named by username or email; unknown names get
    # their own counter, so the throttle behaves the same for them (no enumeration).
    user = find_login_user(login)
    account = f"user:{user.id}" if user else f"name:{canonical_username(login)[:150]}"
    return [
        (account, cfg["LOGIN_THROTTLE_ACCOUNT_FREE"]),
        (f"ip:{ip[:45]}", cfg["LOGIN_THROTTLE_IP_FREE"]),
    ]


def delay_for(failures: int, free: int) -> float:
    """Seconds to wait after ``failures`` failures: 0 within the allowance, then doubling."""
    if failures < free:
        return 0.0
    cfg = current_app.config
    base, cap = cfg["LOGIN_THROTTLE_BASE_SECONDS"], cfg["LOGIN_THROTTLE_MAX_SECONDS"]
    return float(min(cap, base * 2 ** min(failures - free, 30)))


def check_login_allowed(login: str, ip: str) -> float | None:
    """None when an attempt may go ahead, else the seconds still to wait."""
    store, now = _store(), time.time()
    forget = current_app.config["LOGIN_THROTTLE_FORGET_SECONDS"]
    wait = 0.0
    for key, free in _keys(login, ip):
        failures, last = store.get(key)
        delay = delay_for(failures, free)
        # Within the allowance there is nothing to wait for, even when another request's
        # failure was stored after ``now`` was read (last > now would look like a wait).
        if delay and now - last <= forget:
            wait = max(wait, last + delay - now)
    return max(0.01, round(wait, 2)) if wait > 0 else None


def record_login_failure(login: str, ip: str) -> None:
    store = _store()
    for key, _ in _keys(login, ip):
        store.bump(key)


def record_login_success(login: str, ip: str) -> None:
    """Clear the account counter; the IP counter only decays, so one good account cannot
    wash away the failures of an address trying many others."""
    store = _store()
    store.clear(_keys(login, ip)[0][0])
