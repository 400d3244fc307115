"""Revoked JWTs, shared by every app instance: Redis when configured, the database otherwise.

Keys are ``jti:<id>`` (one token) and ``fam:<id>`` (a refresh family and the access tokens
issued from it). An entry lives only until the tokens it names would expire anyway, so the
store stays small. A check is one Redis MGET or one primary-key lookup.

The database keeps every revocation, with Redis too: Redis keeps nothing across a restart
(the deployments run it without persistence) and a flush empties it, and a revoked access
token must not come back to life for the rest of its 15 minutes because of either. Every
MGET also reads a marker that ``restore`` sets once the database's revocations are back in
Redis; while it is missing, a missing entry proves nothing and the database answers.
One worker at a time copies them back (a lock key), not every request that finds the
marker gone; and each revocation is written to Redis again once it is committed, so one
that Redis forgot before its commit, after another worker's copy had read the rows, is
not lost.
"""

from __future__ import annotations

import logging
from datetime import datetime

from flask import current_app, has_app_context
from sqlalchemy import delete, event, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from bastion.extensions import db
from bastion.models import RevokedToken, utcnow

log = logging.getLogger(__name__)


def _redis_key(key: str, prefix: str | None = None) -> str:
    return f"{prefix or current_app.config['REDIS_PREFIX']}:revoked:{key}"


def uses_redis() -> bool:
    return bool(current_app.config.get("REDIS_URL"))


# After the prefix: set (without expiry) once Redis holds every revocation (``restore``).
LOADED_SUFFIX = ":revocations-loaded"
# After the prefix: held by the one worker copying the revocations back. It is left to
# expire, after a copy that failed too: at most one full read per RESTORE_SECONDS, while
# every request that finds no marker meanwhile asks the database about its own keys.
RESTORING_SUFFIX = ":revocations-restoring"
RESTORE_SECONDS = 10
RESTORE_BATCH = 1000  # rows read, and SETs sent in one pipeline, at a time
# ``Session.info`` key: revocations of the open transaction, set in Redis again at commit.
_PENDING = "bastion.revocations"


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
    reader trusts a missing entry before every revocation is back; unless another worker
    is doing so. A failure is logged, not raised: the caller's answer comes from the
    database either way."""
    from bastion.redis_client import get_redis

    prefix = current_app.config["REDIS_PREFIX"]
    client = get_redis()
    if not client.set(prefix + RESTORING_SUFFIX, b"1", nx=True, ex=RESTORE_SECONDS):
        return
    try:
        now = utcnow()
        rows = db.session.execute(
            select(RevokedToken.key, RevokedToken.expires_at)
            # Only the API's keys: the table also keeps spent 2FA markers (auth.pending)
            # and held usernames (auth.registration).
            .where(RevokedToken.expires_at > now,
                   or_(RevokedToken.key.startswith("jti:"), RevokedToken.key.startswith("fam:")))
            .execution_options(yield_per=RESTORE_BATCH)
        )
        with rows:
            for batch in rows.partitions():
                pipe = client.pipeline(transaction=False)
                for key, until in batch:
                    # NX: a revocation made meanwhile, with a later expiry, keeps it.
                    pipe.set(_redis_key(key, prefix), b"1", ex=_ttl(until, now), nx=True)
                pipe.execute()
        client.set(prefix + LOADED_SUFFIX, b"1")
    except Exception:
        log.exception("could not copy revocations back into redis")


def revoke(key: str, until: datetime, *, commit: bool = True) -> None:
    """Mark ``key`` revoked until ``until`` (the latest expiry of what it names): in Redis
    at once when configured, and in the caller's transaction in the database always."""
    if uses_redis():
        from bastion.redis_client import get_redis

        get_redis().set(_redis_key(key), b"1", ex=_ttl(until, utcnow()))
        pending: dict[str, datetime] = db.session.info.setdefault(_PENDING, {})
        pending[key] = max(until, pending.get(key, until))
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


@event.listens_for(Session, "after_commit")
def _set_again(session: Session) -> None:
    """The transaction's revocations, in Redis again now that the database has them.

    Set at once by ``revoke``, an entry may be lost before the commit (a restart, a flush)
    while another worker copies the rows back without it, the row not yet committed: the
    marker would then vouch for a Redis without it. Written again after the commit, it is
    in Redis, or in the rows any later copy reads.
    """
    if session.in_nested_transaction():  # a savepoint released: nothing committed yet
        return
    pending: dict[str, datetime] | None = session.info.pop(_PENDING, None)
    if not pending or not has_app_context() or not uses_redis():
        return
    from bastion.redis_client import get_redis

    now = utcnow()
    try:
        pipe = get_redis().pipeline(transaction=False)
        for key, until in pending.items():
            pipe.set(_redis_key(key), b"1", ex=_ttl(until, now))
        pipe.execute()
    except Exception:  # Redis failing now: the first write stands unless it was lost too
        log.exception("could not store %d revocation(s) in redis again after commit",
                      len(pending))


@event.listens_for(Session, "after_rollback")
def _discard(session: Session) -> None:
    # A savepoint's rollback leaves the outer transaction's revocations pending: setting
    # one again that was rolled back with it only repeats what revoke() already set.
    if session.in_nested_transaction():
        return
    session.info.pop(_PENDING, None)
