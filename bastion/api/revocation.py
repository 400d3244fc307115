"""Revoked JWTs, shared by every app instance: Redis when configured, the database otherwise.

Keys are ``jti:<id>`` (one token) and ``fam:<id>`` (a refresh family and the access tokens
issued from it). An entry lives only until the tokens it names would expire anyway, so the
store stays small. A check is one Redis MGET or one primary-key lookup.

The database keeps every revocation, with Redis too: Redis keeps nothing across a restart
(the deployments run it without persistence) and a flush empties it, and a revoked access
token must not come back to life for the rest of its 15 minutes because of either. Every
MGET also reads a marker that ``restore`` sets once the database's revocations are back in
Redis; while it is missing, a missing entry proves nothing and the database answers.
"""

from __future__ import annotations

from datetime import datetime

from flask import current_app
from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from bastion.extensions import db
from bastion.models import RevokedToken, utcnow


def _redis_key(key: str, prefix: str | None = None) -> str:
    return f"{prefix or current_app.config['REDIS_PREFIX']}:revoked:{key}"


def uses_redis() -> bool:
    return bool(current_app.config.get("REDIS_URL"))


# After the prefix: set (without expiry) once Redis holds every revocation (``restore``).
LOADED_SUFFIX = ":revocations-loaded"


def redis_keys(*keys: str) -> list[str]:
    """The Redis keys of ``keys`` and, last, the marker that Redis holds every revocation:
    for a caller that reads them in its own MGET and asks ``revoked`` about the values."""
    prefix = current_app.config["REDIS_PREFIX"]  # asked on every API call: read once
    return [*[_redis_key(k, prefix) for k in keys if k], prefix + LOADED_SUFFIX]


def revoked(keys: tuple[str, ...], values: list[bytes | None]) -> bool:
    """Whether ``values``, the MGET of ``redis_keys(*keys)``, revoke one of ``keys``.

    Without the marker Redis has lost its revocations (restarted, flushed): they are
    copied back from the database, which answers this time.
    """
    if values[-1] is None:
        restore()
        return _revoked_in_database(tuple(k for k in keys if k))
    return any(v is not None for v in values[:-1])


def _ttl(until: datetime, now: datetime) -> int:
    return max(1, int((until - now).total_seconds()) + 1)


def restore() -> None:
    """Copy the database's live revocations into Redis, then set the marker, so that no
    reader trusts a missing entry before every revocation is back."""
    from bastion.redis_client import get_redis

    now = utcnow()
    rows = db.session.execute(
        select(RevokedToken.key, RevokedToken.expires_at).where(RevokedToken.expires_at > now)
    ).all()
    prefix = current_app.config["REDIS_PREFIX"]
    pipe = get_redis().pipeline(transaction=False)
    for key, until in rows:
        pipe.set(_redis_key(key, prefix), b"1", ex=_ttl(until, now))
    pipe.set(prefix + LOADED_SUFFIX, b"1")
    pipe.execute()


def revoke(key: str, until: datetime, *, commit: bool = True) -> None:
    """Mark ``key`` revoked until ``until`` (the latest expiry of what it names): in Redis
    at once when configured, and in the caller's transaction in the database always."""
    if uses_redis():
        from bastion.redis_client import get_redis

        get_redis().set(_redis_key(key), b"1", ex=_ttl(until, utcnow()))
    # Revocations are rare, so each one also sweeps entries that no longer matter.
    db.session.execute(delete(RevokedToken).where(RevokedToken.expires_at <= utcnow()))
    # Race-free: the same key revoked twice at once (a client posting its token to
    # /auth/revoke twice) must not fail the second request on the primary key.
    insert = pg_insert if db.session.get_bind().dialect.name == "postgresql" else sqlite_insert
    db.session.execute(
        insert(RevokedToken)
        .values(key=key, expires_at=until)
        .on_conflict_do_nothing(index_elements=[RevokedToken.key])
    )
    db.session.execute(
        update(RevokedToken)
        .where(RevokedToken.key == key, RevokedToken.expires_at < until)
        .values(expires_at=until)
    )
    if commit:
        db.session.commit()


def any_revoked(*keys: str) -> bool:
    """True when any of ``keys`` is revoked (and not yet past its expiry)."""
    keys = tuple(k for k in keys if k)
    if not keys:
        return False
    if uses_redis():
        from bastion.redis_client import get_redis

        values: list[bytes | None] = get_redis().mget(redis_keys(*keys))  # type: ignore[assignment]
        return revoked(keys, values)
    return _revoked_in_database(keys)


def _revoked_in_database(keys: tuple[str, ...]) -> bool:
    found = db.session.scalar(
        select(RevokedToken.key)
        .where(RevokedToken.key.in_(keys), RevokedToken.expires_at > utcnow())
        .limit(1)
    )
    return found is not None

