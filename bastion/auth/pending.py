"""Each half-finished sign-in (password right, code still to come) finishes at most once.

The marker lives in the signed session cookie. A copy of that cookie taken before the code
was typed would otherwise start a second, independent session for the rest of its five
minutes, with the next code from the app or another recovery code. So each marker carries
a random nonce, and the sign-in it leads to claims the nonce in a shared, expiring record,
only once the code was right: a claimed nonce ends the marker everywhere.

Store: Redis when ``BASTION_REDIS_URL`` is set (one ``SET NX``, so of two completions at
once exactly one wins, whichever worker or instance serves them); otherwise a dict in the
process, under a lock so that of its threads exactly one wins too (development and tests
only: production runs with Redis). Unreachable Redis fails closed: no session starts and
the request gets a 503, as every credential request does while that store is down. The
code typed is spent then.

With Redis, the database records every claim too (a ``revoked_tokens`` row, ``2fa:`` and a
hash of the nonce, until the record would expire): Redis keeps nothing across a restart (the
deployments run it without persistence) and a flush empties it, and a spent marker must
not finish a second sign-in because of either. Claimed in Redis first, the row then decides
only for a nonce that Redis forgot.

The code form names its marker too (``form_mark``), and the session the marker finishes
keeps that name and where the sign-in went (``remember_finished``). The same form sent again
by the browser that signed in (a double click, a resubmit, a second tab), now carrying the
new session's cookie, is sent where the sign-in went (``finished_target``), with nothing
refused and nothing started.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import secrets
import threading
import time
from datetime import timedelta
from typing import TypeGuard

from flask import current_app, session
from redis.exceptions import RedisError
from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from werkzeug.exceptions import ServiceUnavailable

from bastion.extensions import db
from bastion.models import RevokedToken, utcnow
from bastion.observability.outages import LIMITER_RETRY_AFTER
from bastion.observability.redaction import request_path
from bastion.security.tokens import keyed_digest

log = logging.getLogger("bastion.auth")

_MEMORY = "bastion.pending_2fa_spent"  # in app.extensions
# A record outlives its marker by this much, so an instance whose clock runs behind the
# one that claimed it still sees the marker spent until the marker has expired there too.
CLOCK_SLACK_SECONDS = 60
NONCE_BYTES = 16
_NONCE_CHARS = math.ceil(NONCE_BYTES * 4 / 3)  # token_urlsafe's length, without padding
# In the session a marker finished: its form's mark, where the sign-in went and until when.
FINISHED_KEY = "2fa_finished"


def new_nonce() -> str:
    return secrets.token_urlsafe(NONCE_BYTES)


def _key(nonce: str) -> str:
    return f"{current_app.config['RATELIMIT_KEY_PREFIX']}:2fa-pending:{nonce}"


def _row_key(nonce: str) -> str:
    # A plain hash, not keyed: it must still match after a SECRET_KEY rotation.
    return "2fa:" + hashlib.sha256(nonce.encode()).hexdigest()[:32]


def _spent_in_database(nonce: str) -> bool:
    found = db.session.scalar(
        select(RevokedToken.key)
        .where(RevokedToken.key == _row_key(nonce), RevokedToken.expires_at > utcnow())
    )
    return found is not None


def _claim_in_database(nonce: str, ttl: int) -> bool:
    """Record the claim in the caller's transaction; False when a row already holds it (a
    second claim waits for the first one's commit on the primary key)."""
    now = utcnow()
    db.session.execute(delete(RevokedToken).where(
        RevokedToken.key == _row_key(nonce), RevokedToken.expires_at <= now))
    insert = pg_insert if db.session.get_bind().dialect.name == "postgresql" else sqlite_insert
    added = db.session.scalar(
        insert(RevokedToken)
        .values(key=_row_key(nonce), expires_at=now + timedelta(seconds=ttl))
        .on_conflict_do_nothing(index_elements=[RevokedToken.key])
        .returning(RevokedToken.key)
    )
    return added is not None


class _SpentHere:
    """The nonces spent in this process, each until its record expires.

    Not the rate limiter's ``MemoryStorage``: its increment reads the count back outside
    its lock and may drop the lock of a key that is being counted, so two threads claiming
    one nonce at once could both win (or neither)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._until: dict[str, float] = {}

    def spent(self, nonce: str) -> bool:
        with self._lock:
            return self._until.get(nonce, 0.0) > time.monotonic()

    def claim(self, nonce: str, ttl: float) -> bool:
        now = time.monotonic()
        with self._lock:
            if self._until.get(nonce, 0.0) > now:
                return False
            # One claim per finished sign-in: dropping the expired records here is cheap.
            self._until = {n: until for n, until in self._until.items() if until > now}
            self._until[nonce] = now + ttl
            return True


def _memory() -> _SpentHere:
    found: _SpentHere | None = current_app.extensions.get(_MEMORY)
    return found or current_app.extensions.setdefault(_MEMORY, _SpentHere())


def _unavailable(exc: RedisError) -> ServiceUnavailable:
    # The credential routes' own event for this outage (the same Redis, the same answer).
    log.warning("rate-limit store unreachable: refusing credential request",
                extra={"error": type(exc).__name__, "path": request_path()})
    return ServiceUnavailable(
        description=(
            "Signing in is paused for a moment while a service recovers. Please try again shortly."
        ),
        retry_after=LIMITER_RETRY_AFTER,
    )


def _well_formed(nonce: object) -> TypeGuard[str]:
    return isinstance(nonce, str) and len(nonce) == _NONCE_CHARS


def spent(nonce: object) -> bool:
    """Whether the marker with ``nonce`` finished a sign-in already (a marker without a
    nonce counts as spent: the password is asked again)."""
    if not _well_formed(nonce):
        return True
    if not current_app.config.get("REDIS_URL"):
        return _memory().spent(nonce)
    from bastion.redis_client import get_redis

    try:
        found = bool(get_redis().exists(_key(nonce)))
    except RedisError as exc:
        raise _unavailable(exc) from exc
    return found or _spent_in_database(nonce)


def claim(nonce: object, expires_at: float) -> bool:
    """Spend the marker's ``nonce`` until it has expired; False when it was spent already.

    Call only once its code was right, and start the session only on True. Raises
    ``ServiceUnavailable`` when the shared store cannot record it (fail closed).
    """
    if not _well_formed(nonce):
        return False
    ttl = max(1, math.ceil(expires_at - time.time())) + CLOCK_SLACK_SECONDS
    if not current_app.config.get("REDIS_URL"):
        return _memory().claim(nonce, ttl)
    from bastion.redis_client import get_redis

    try:
        won = bool(get_redis().set(_key(nonce), 1, nx=True, ex=ttl))
    except RedisError as exc:
        raise _unavailable(exc) from exc
    return won and _claim_in_database(nonce, ttl)


# After the sign-in ----------------------------------------------------------------------
def form_mark(nonce: object) -> str:
    """Names the marker with ``nonce`` in its code form, without revealing the nonce."""
    return keyed_digest(b"pending-2fa-form:", str(nonce))[:32] if _well_formed(nonce) else ""


def remember_finished(nonce: object, target: str, expires_at: float) -> None:
    """Keep, in the session the marker just started, which form finished it and where the
    sign-in went, for as long as the marker would have lived."""
    session[FINISHED_KEY] = {"mark": form_mark(nonce), "next": target, "exp": expires_at}


def finished_target(mark: object) -> str | None:
    """Where this session's sign-in went, when ``mark`` (from a code form sent again) names
    the marker that started it and the marker would still be alive; else None."""
    done = session.get(FINISHED_KEY)
    if not isinstance(done, dict) or not isinstance(mark, str) or not mark:
        return None
    expires_at = done.get("exp")
    if not isinstance(expires_at, int | float) or expires_at < time.time():
        session.pop(FINISHED_KEY, None)
        return None
    if not hmac.compare_digest(mark, str(done.get("mark") or "")):
        return None
    return str(done.get("next") or "")
