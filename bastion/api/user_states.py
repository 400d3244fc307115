"""The state of a token's user, without a database transaction on every API request.

Every API request must see its user's current state: disabling an account, changing a
password or a role has to end or narrow access at once. Reading the row costs a database
transaction, the largest single cost of an API read. With Redis configured, each worker
instead keeps a small snapshot of that state per user, trusted only while the user's
*stamp* in Redis is the one the snapshot was taken under. The stamp is fetched in the same
MGET as the revocation keys, so a request with a known user costs one Redis round trip.

Writers through the ORM session cannot forget to change the stamp: SQLAlchemy session
events notice every flush that changes a user's ``disabled_at``, ``password_changed_at``,
role or second factor (``totp_enabled_at``), or deletes the user, and replace that user's
stamp once the outermost transaction commits (a savepoint's release or rollback neither
publishes nor forgets anything). An UPDATE or DELETE statement on users or roles run through
the session (ORM-enabled or on the bare table), and a renamed or deleted role, cannot say
which users they touched, so they replace a global epoch that every snapshot also depends
on, unless the statement declares itself harmless with the execution option
``user_state_neutral=True``. What bypasses the session (SQL on its raw connection,
``bulk_update_mappings``, psql) is caught by ``MAX_AGE`` below, or at once if the stamp key
is deleted.

Why this is safe: a reader fixes the stamp *before* it reads the row, and a writer replaces
the stamp *after* its commit. A snapshot therefore never survives a committed change whose
new stamp it could have seen. A stamp missing from Redis (expired, evicted, flushed) only
forces a fresh read. Snapshots are also never used for longer than ``MAX_AGE`` seconds, so
a stamp change lost to a Redis failure right after a commit heals by itself.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any, cast

from flask import current_app, g, has_app_context
from sqlalchemy import event, inspect
from sqlalchemy.orm import ORMExecuteState, Session

from bastion.extensions import db
from bastion.models import Role, User

log = logging.getLogger(__name__)

STAMP_SECONDS = 24 * 3600  # a stamp nobody reads for a day is recreated on demand
MAX_AGE = 60.0
_MAX_SNAPSHOTS = 10_000
# Every column a UserState is built from: a change to any of them replaces the user's stamp.
_WATCHED = (
    "disabled_at", "password_changed_at", "password_hash", "role_id", "role", "totp_enabled_at"
)
_PENDING = "bastion.user_state_changes"
_EPOCH = 0  # the pseudo user id that stands for "every user" in the pending set
# Why such a user's API call or refresh is refused: the token endpoint's words (api.signin).
ENROL_2FA_DETAIL = (
    "Your role requires two-factor authentication: enrol on the account page first."
)


@dataclass(frozen=True, slots=True)
class UserState:
    """What the API's authentication needs to know about a token's user."""

    id: int
    active: bool
    password_changed_ts: float | None
    role_name: str
    password_fingerprint: str
    hash_fingerprint: str  # what tokens from earlier versions carry (passwords.hash_fingerprint)
    has_2fa: bool
    # Both fingerprints under each SECRET_KEY_FALLBACKS key: what tokens issued before a
    # rotation carry. Empty, at no cost, while no rotation is under way; made with the
    # snapshot, never per request, and compared only when the current ones did not match.
    fallback_fingerprints: tuple[str, ...] = ()

    @property
    def lacks_required_2fa(self) -> bool:
        """The role requires 2FA (``REQUIRE_2FA_ROLES``) and the user has none."""
        return lacks_required_2fa(self.role_name, self.has_2fa)

    @classmethod
    def of(cls, user: User) -> UserState:
        from bastion.security.passwords import (
            fallback_fingerprints,
            hash_fingerprint,
            password_fingerprint,
        )

        changed = user.password_changed_at
        return cls(
            id=user.id,
            active=user.is_active,
            password_changed_ts=changed.timestamp() if changed is not None else None,
            role_name=user.role_name,
            password_fingerprint=password_fingerprint(user.password_changed_at),
            hash_fingerprint=hash_fingerprint(user.password_hash),
            has_2fa=user.has_2fa,
            fallback_fingerprints=fallback_fingerprints(changed, user.password_hash),
        )


def lacks_required_2fa(role_name: str, has_2fa: bool) -> bool:
    """Whether a user of ``role_name`` must enrol in 2FA before using the API at all.

    The API's form of the web's enrolment gate (``bastion.auth.enrolment``): the token
    endpoint refuses such a user, and so must every token they already hold, since a role
    can be granted and a second factor turned off after the sign-in.
    """
    return not has_2fa and role_name in current_app.config["REQUIRE_2FA_ROLES"]


Stamp = tuple[bytes | None, bytes | None]  # (the user's stamp, the global epoch)


def _keys(user_id: int) -> tuple[str, str]:
    prefix = current_app.config["REDIS_PREFIX"]
    return f"{prefix}:user-state:{user_id}", f"{prefix}:user-state:epoch"


def _snapshots() -> dict[int, tuple[Stamp, float, UserState]]:
    store: dict[int, tuple[Stamp, float, UserState]] | None = current_app.extensions.get(
        "bastion.user_states"
    )
    if store is None:
        store = current_app.extensions["bastion.user_states"] = {}
    return store


def read_keys(extra_keys: list[str], user_id: int) -> list[str]:
    """What ``fetch`` reads: ``extra_keys``, then the user's stamp keys."""
    return [*extra_keys, *_keys(user_id)]


def fetch(extra_keys: list[str], user_id: int) -> tuple[list[bytes | None], Stamp]:
    """One MGET: the values of ``extra_keys`` and the user's current stamp. The MGET may
    already have gone to Redis with the request's rate-limit hit (``ratelimit_storage``)."""
    from bastion.redis_client import get_redis
    from bastion.security import ratelimit_storage

    keys = read_keys(extra_keys, user_id)
    values = ratelimit_storage.take(keys)
    if values is None:
        values = cast(list[bytes | None], get_redis().mget(keys))
    n = len(extra_keys)
    return values[:n], (values[n], values[n + 1])


def state(user_id: int, stamp: Stamp) -> UserState | None:
    """The user's state under ``stamp`` (from ``fetch``): the worker's snapshot when it is
    still valid, else read from the database. None when there is no such user."""
    held = _snapshots().get(user_id)
    if held is not None and held[0] == stamp and time.monotonic() - held[1] < MAX_AGE:
        return held[2]
    stamp = _settle(user_id, stamp)
    # populate_existing: never trust an instance this session may already hold.
    user = db.session.get(User, user_id, populate_existing=True)
    if user is None:
        return None
    # The session's identity map holds rows weakly: keeping this one for the rest of the
    # request lets a view that needs it (ApiPrincipal.user) have it without a second read.
    g.user_state_row = user
    snapshot = UserState.of(user)
    store = _snapshots()
    if len(store) >= _MAX_SNAPSHOTS:
        store.clear()  # bounded; a flood of users only costs database reads
    store[user_id] = (stamp, time.monotonic(), snapshot)
    return snapshot


def _settle(user_id: int, stamp: Stamp) -> Stamp:
    """Create whichever of the stamps is missing; keep one another reader just created."""
    from bastion.redis_client import get_redis

    if None not in stamp:
        return stamp
    client = get_redis()
    settled = []
    for key, value in zip(_keys(user_id), stamp, strict=True):
        if value is None:
            fresh = secrets.token_bytes(12)
            # Ours if none exists, else whichever another reader or a writer set. (Two
            # commands rather than SET NX GET, which needs Redis 7.) A value that vanished
            # in between only means the next request settles again.
            if client.set(key, fresh, ex=STAMP_SECONDS, nx=True):
                value = fresh
            else:
                current: bytes | None = client.get(key)  # type: ignore[assignment]
                value = current or fresh
        settled.append(value)
    return settled[0], settled[1]


def forget(user_ids: set[int]) -> None:
    """Replace the stamps of ``user_ids`` (``_EPOCH`` for every user) after a commit."""
    from bastion.redis_client import get_redis

    store = _snapshots()
    for user_id in user_ids:
        if user_id == _EPOCH:
            store.clear()
        else:
            store.pop(user_id, None)
    pipe = get_redis().pipeline(transaction=False)
    for user_id in user_ids:
        user_key, epoch_key = _keys(user_id)
        pipe.set(epoch_key if user_id == _EPOCH else user_key, secrets.token_bytes(12),
                 ex=STAMP_SECONDS)
    pipe.execute()


# Session events: every transaction that changes what a snapshot holds replaces stamps.


def _tracking() -> bool:
    return has_app_context() and bool(current_app.config.get("REDIS_URL"))


@event.listens_for(Session, "after_flush")
def _note_changes(session: Session, _context: Any) -> None:
    if not _tracking():
        return
    changed = {u.id for u in session.deleted if isinstance(u, User)}
    for obj in session.dirty:
        if isinstance(obj, User):
            attrs = inspect(obj).attrs
            if any(attrs[name].history.has_changes() for name in _WATCHED):
                changed.add(obj.id)
        elif isinstance(obj, Role) and inspect(obj).attrs.name.history.has_changes():
            changed.add(_EPOCH)  # every holder's scopes follow the role's name
    if any(isinstance(obj, Role) for obj in session.deleted):
        changed.add(_EPOCH)
    if changed:
        session.info.setdefault(_PENDING, set()).update(changed)


_STATE_TABLES = frozenset({User.__tablename__, Role.__tablename__})


@event.listens_for(Session, "do_orm_execute")
def _note_bulk(state: ORMExecuteState) -> None:
    if not (state.is_update or state.is_delete) or not _tracking():
        return
    if state.execution_options.get("user_state_neutral", False):
        return
    # The mapper for ORM-enabled statements; the table for ``update(User.__table__)``.
    mapper = state.bind_mapper
    table = getattr(state.statement, "table", None)
    if (mapper is not None and mapper.class_ in (User, Role)) or (
        getattr(table, "name", None) in _STATE_TABLES
    ):
        state.session.info.setdefault(_PENDING, set()).add(_EPOCH)


@event.listens_for(Session, "after_commit")
def _publish(session: Session) -> None:
    # Also called when a savepoint is released: the changes are not committed yet, and a
    # stamp replaced now would let a reader keep the old row under the new stamp.
    if session.in_nested_transaction():
        return
    pending = session.info.pop(_PENDING, None)
    if not pending or not _tracking():
        return
    try:
        forget(pending)
    except Exception:  # the commit stands; MAX_AGE bounds how long a snapshot may lag
        log.exception("could not replace user state stamps for %d user(s)", len(pending))


@event.listens_for(Session, "after_rollback")
def _discard(session: Session) -> None:
    # A savepoint's rollback leaves what the outer transaction flushed before it; replacing
    # a stamp for a change rolled back with it costs one database read, nothing more.
    if session.in_nested_transaction():
        return
    session.info.pop(_PENDING, None)
