"""Sign-in throttling: growing delays per account and per client address.

Each attempt bumps two counters, one for the account (or the unknown name typed) and one
for the client IP. Past a free allowance the next attempt must wait ``BASE * 2**(n - free)``
seconds, capped at ``MAX``. Unlike a lockout, the wait ends on its own, so an attacker cannot
keep the real owner out for long, while guessing becomes far too slow to pay off. Counters
are forgotten after ``LOGIN_THROTTLE_FORGET_SECONDS`` without attempts.

An attempt is counted *before* the password hash runs, in the same atomic step that checks
the wait (``reserve``): checking first and counting the failure after the slow hash let a
burst of parallel guesses all pass one check. A right password gives its attempt back
(``refund``); a completed sign-in also clears the account counter.

Storage is Redis when ``BASTION_REDIS_URL`` is set (shared by all instances, expiring keys)
and otherwise the ``login_throttles`` table. Flask-Limiter offers fixed quotas, not delays
that grow with each failure, hence this small module. The API token endpoint uses the same
functions.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol

from flask import current_app, g
from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from bastion.extensions import db
from bastion.models import LoginThrottle
from bastion.models.base import affected_rows
from bastion.security.ratelimit_keys import client_key

# Compare-and-set rounds before a contended database counter gives up; it then asks the
# client to wait a moment rather than let an uncounted attempt through.
_CAS_ROUNDS = 8
_CONTENDED_WAIT = 1.0


class _Store(Protocol):
    def reserve(self, key: str, free: int, now: float) -> tuple[float, float | None]: ...
    def refund(self, key: str, now: float, previous: float | None) -> None: ...
    def clear(self, key: str) -> None: ...


def _wait(failures: int, last: float, free: int, now: float) -> float:
    """Seconds still to wait with ``failures`` counted, the last at ``last``; 0 to go ahead."""
    delay = delay_for(failures, free)
    # Within the allowance there is nothing to wait for, even when another request's
    # attempt was stored after ``now`` was read (last > now would look like a wait).
    return max(0.0, last + delay - now) if delay else 0.0


class _DatabaseStore:
    def reserve(self, key: str, free: int, now: float) -> tuple[float, float | None]:
        """(0, the last attempt's time before this one) when counted, else (wait, None)."""
        forget = current_app.config["LOGIN_THROTTLE_FORGET_SECONDS"]
        stamp = datetime.fromtimestamp(now, UTC)
        for _ in range(_CAS_ROUNDS):
            # Columns, not the entity: the identity map would hand back a stale row.
            row = db.session.execute(
                select(LoginThrottle.failures, LoginThrottle.last_failure_at)
                .where(LoginThrottle.key == key)
            ).first()
            if row is None:
                try:
                    db.session.execute(insert(LoginThrottle).values(
                        key=key, failures=1, last_failure_at=stamp))
                    db.session.commit()
                    return 0.0, None
                except IntegrityError:  # another attempt inserted it first: read it again
                    db.session.rollback()
                    continue
            seen, last_at = row
            last = last_at.timestamp()  # aware: UTCDateTime
            failures = 0 if now - last > forget else seen
            if wait := _wait(failures, last, free, now):
                return wait, None
            # Compare-and-set: only if nobody counted an attempt since the read.
            done = affected_rows(db.session.execute(
                update(LoginThrottle)
                .where(LoginThrottle.key == key, LoginThrottle.failures == seen,
                       LoginThrottle.last_failure_at == last_at)
                .values(failures=failures + 1, last_failure_at=stamp)
            ))
            db.session.commit()
            if done:
                return 0.0, last
        return _CONTENDED_WAIT, None

    def refund(self, key: str, now: float, previous: float | None) -> None:
        counted = LoginThrottle.key == key, LoginThrottle.failures > 0
        stamp = datetime.fromtimestamp(now, UTC)
        # Still the last attempt: the time goes back to the one before it, so a right
        # password leaves any wait exactly as it was.
        done = previous is not None and affected_rows(db.session.execute(
            update(LoginThrottle)
            .where(*counted, LoginThrottle.last_failure_at == stamp)
            .values(failures=LoginThrottle.failures - 1,
                    last_failure_at=datetime.fromtimestamp(previous, UTC))
        ))
        if not done:
            db.session.execute(
                update(LoginThrottle).where(*counted).values(failures=LoginThrottle.failures - 1)
            )
        db.session.commit()

    def clear(self, key: str) -> None:
        db.session.execute(delete(LoginThrottle).where(LoginThrottle.key == key))
        db.session.commit()


# Check and count in one step on the server, so parallel attempts cannot both pass.
_RESERVE = """
local n = tonumber(redis.call('HGET', KEYS[1], 'n') or '0')
local last = redis.call('HGET', KEYS[1], 't') or ''
local t = tonumber(last) or 0
local now, free, base, cap = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if n >= free then
  local wait = t + math.min(cap, base * 2 ^ math.min(n - free, 30)) - now
  if wait > 0 then return {tostring(wait), ''} end
end
redis.call('HSET', KEYS[1], 'n', n + 1, 't', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return {'0', last}
"""
# Give one attempt back; if it is still the last one, its time goes back to the one before.
_REFUND = """
if tonumber(redis.call('HGET', KEYS[1], 'n') or '0') > 0 then
  redis.call('HINCRBY', KEYS[1], 'n', -1)
  if ARGV[2] ~= '' and redis.call('HGET', KEYS[1], 't') == ARGV[1] then
    redis.call('HSET', KEYS[1], 't', ARGV[2])
  end
end
"""


class _RedisStore:
    def __init__(self) -> None:
        from bastion.redis_client import get_redis

        self.redis = get_redis()
        self.prefix = f"{current_app.config['RATELIMIT_KEY_PREFIX']}:throttle:"

    def reserve(self, key: str, free: int, now: float) -> tuple[float, float | None]:
        cfg = current_app.config
        # Keys expire LOGIN_THROTTLE_FORGET_SECONDS after the last attempt: that is forgetting.
        wait, last = self.redis.register_script(_RESERVE)(
            keys=[self.prefix + key],
            args=[repr(now), free, cfg["LOGIN_THROTTLE_BASE_SECONDS"],
                  cfg["LOGIN_THROTTLE_MAX_SECONDS"], cfg["LOGIN_THROTTLE_FORGET_SECONDS"]],
        )
        return float(wait), (float(last) if last else None)

    def refund(self, key: str, now: float, previous: float | None) -> None:
        self.redis.register_script(_REFUND)(
            keys=[self.prefix + key], args=[repr(now), "" if previous is None else repr(previous)]
        )

    def clear(self, key: str) -> None:
        self.redis.delete(self.prefix + key)


def _store() -> _Store:
    return _RedisStore() if current_app.config.get("REDIS_URL") else _DatabaseStore()


def _keys(login: str, ip: str) -> list[tuple[str, int]]:
    from bastion.auth.services import canonical_username, find_login_user

    cfg = current_app.config
    # One counter per account whether it is named by username or email; unknown names get
    # their own counter, so the throttle behaves the same for them (no enumeration). So do
    # accounts never confirmed (they cannot sign in): a shared counter would tell whoever
    # signed up with a username of their own and someone's address whether the address
    # had been free, by a wait for the address once the username's attempts were spent.
    user = find_login_user(login)
    known = user is not None and user.email_confirmed_at is not None
    account = f"user:{user.id}" if known and user else f"name:{canonical_username(login)[:150]}"
    return [
        (account, cfg["LOGIN_THROTTLE_ACCOUNT_FREE"]),
        # An IPv6 client counts as its /64, as in the route limits: rotating through it
        # would bring a fresh allowance with every attempt.
        (f"ip:{client_key(ip)[:45]}", cfg["LOGIN_THROTTLE_IP_FREE"]),
    ]


def retry_after(wait: float) -> int:
    """A throttle's wait as whole seconds for ``Retry-After`` and the page: rounded up, at
    least one, so a client that waits as told is not refused again."""
    return max(1, int(wait + 0.999))


def delay_for(failures: int, free: int) -> float:
    """Seconds to wait after ``failures`` failures: 0 within the allowance, then doubling."""
    if failures < free:
        return 0.0
    cfg = current_app.config
    base, cap = cfg["LOGIN_THROTTLE_BASE_SECONDS"], cfg["LOGIN_THROTTLE_MAX_SECONDS"]
    return float(min(cap, base * 2 ** min(failures - free, 30)))


def reserve(login: str, ip: str) -> float | None:
    """Count this attempt now, before the password is checked; or, when a counter asks for
    a wait, count nothing and return the seconds still to wait."""
    store, now = _store(), time.time()
    counted: dict[str, float | None] = {}
    for key, free in _keys(login, ip):
        wait, previous = store.reserve(key, free, now)
        if wait:
            for done, before in counted.items():  # refused: give back what was counted
                store.refund(done, now, before)
            return max(0.01, round(wait, 2))
        counted[key] = previous
    # Kept for this request: a right password gives back exactly this attempt.
    g.throttle_reserved = (now, counted)
    return None


def _give_back(store: _Store, key: str) -> None:
    now, counted = g.get("throttle_reserved", (time.time(), {}))
    if key in counted:
        store.refund(key, now, counted.pop(key))


def refund(login: str, ip: str) -> None:
    """The password (or code) was right: this attempt was not a guess, give it back, its
    time too, so the next step (the code after the password) finds the wait as it was."""
    store = _store()
    for key, _ in _keys(login, ip):
        _give_back(store, key)


def record_login_success(login: str, ip: str) -> None:
    """Signed in: clear the account counter and give the address its attempt back. The IP
    counter otherwise only decays, so one good account cannot wash away the failures of an
    address trying many others."""
    store = _store()
    account, address = (key for key, _ in _keys(login, ip))
    store.clear(account)
    _give_back(store, address)
