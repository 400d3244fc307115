"""Revoked JWTs, shared by every app instance: Redis when configured, the database otherwise.

Keys are ``jti:<id>`` (one token) and ``fam:<id>`` (a refresh family and the access tokens
issued from it). An entry lives only until the tokens it names would expire anyway, so the
store stays small. A check is one Redis MGET or one primary-key lookup.
"""

from __future__ import annotations

from datetime import datetime

from flask import current_app
from sqlalchemy import delete, select

from bastion.extensions import db
from bastion.models import RevokedToken, utcnow


def _redis_key(key: str, prefix: str | None = None) -> str:
    return f"{prefix or current_app.config['REDIS_PREFIX']}:revoked:{key}"


def uses_redis() -> bool:
    return bool(current_app.config.get("REDIS_URL"))


def redis_keys(*keys: str) -> list[str]:
    """The Redis keys of ``keys``, for a caller that reads them in its own MGET."""
    prefix = current_app.config["REDIS_PREFIX"]  # asked on every API call: read once
    return [_redis_key(k, prefix) for k in keys if k]


def revoke(key: str, until: datetime, *, commit: bool = True) -> None:
    """Mark ``key`` revoked until ``until`` (the latest expiry of what it names)."""
    if uses_redis():
        from bastion.redis_client import get_redis

        ttl = max(1, int((until - utcnow()).total_seconds()) + 1)
        get_redis().set(_redis_key(key), b"1", ex=ttl)
        return
    # Revocations are rare, so each one also sweeps entries that no longer matter.
    db.session.execute(delete(RevokedToken).where(RevokedToken.expires_at <= utcnow()))
    row = db.session.get(RevokedToken, key)
    if row is None:
        db.session.add(RevokedToken(key=key, expires_at=until))
    elif row.expires_at < until:
        row.expires_at = until
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
        return any(v is not None for v in values)
    found = db.session.scalar(
        select(RevokedToken.key)
        .where(RevokedToken.key.in_(keys), RevokedToken.expires_at > utcnow())
        .limit(1)
    )
    return found is not None

