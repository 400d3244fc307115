"""Signed, expiring links for email confirmation, password reset and email change.

Each token is an itsdangerous signature over the user id and a fingerprint of the account's
email, password (the time it was last set) and security stamp. Once any of them changes, the
token no longer matches: every link dies when the password changes (a reset link is therefore single-use),
when the email changes (a confirmation or email-change link works once, and a reset link
mailed to an old address is dead), and when every session ends (password change, reset,
disabling, "sign out everywhere" renew the stamp), so an email change asked for from a
stolen session cannot be confirmed after the owner has thrown the thief out. A new email
change request renews the stamp too: only the newest request's link can be confirmed.

Checking a link and acting on it are two steps, so two requests holding links that match
(the same link posted twice, or two links of one account) could both act. ``claim`` closes
that gap: a compare-and-set on the state the links were checked against, which exactly one
of them wins.

A link mailed before a rotation of SECRET_KEY, the old key kept in SECRET_KEY_FALLBACKS,
verifies under the old key and its fingerprint matches under it: the rules above apply to
it unchanged. New links are always signed under the current key.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from flask import current_app
from itsdangerous import BadData, URLSafeTimedSerializer
from sqlalchemy import ColumnElement, and_, select, update
from sqlalchemy.orm.attributes import set_committed_value

from bastion.extensions import db
from bastion.models import User
from bastion.models.base import affected_rows
from bastion.security.passwords import password_fingerprint
from bastion.security.tokens import fallback_keys, keyed_digest

MAX_TOKEN_LENGTH = 512


def _serializer(purpose: str) -> URLSafeTimedSerializer:
    """Signs with SECRET_KEY; verifies under it and each of SECRET_KEY_FALLBACKS, so a
    link mailed before a rotation still works (itsdangerous signs with the last key)."""
    keys = [*fallback_keys(), current_app.config["SECRET_KEY"]]
    return URLSafeTimedSerializer(keys, salt=f"bastion.{purpose}")


def fingerprint(value: str, *, key: object = None) -> str:
    """A keyed digest, so the (readable) token payload reveals nothing about the value."""
    return keyed_digest(b"", value, key=key)[:24]


def _state(purpose: str, user: User, key: object = None) -> str:
    # The password by the time it was set, in UTC (a sign-in that rehashes it changes
    # nothing), named as sessions and tokens name it; all of it under one key.
    password = password_fingerprint(user.password_changed_at, key=key)
    return fingerprint("\0".join((purpose, user.email, password, user.security_stamp)), key=key)


def _state_matches(given: str, purpose: str, user: User) -> bool:
    """``given`` is the account's state under SECRET_KEY or, for a link made before a
    rotation, under one of its fallbacks (tried only when the current key's did not match)."""
    if hmac.compare_digest(given, _state(purpose, user)):
        return True
    return any(hmac.compare_digest(given, _state(purpose, user, key)) for key in fallback_keys())


def make_token(purpose: str, user: User, **extra: Any) -> str:
    return _serializer(purpose).dumps({"uid": user.id, "fp": _state(purpose, user), **extra})


def read_token(
    purpose: str, token: str, max_age_seconds: int
) -> tuple[User, dict[str, Any]] | None:
    """The user and payload of a valid, unexpired token whose state still matches; else None."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    try:
        data = _serializer(purpose).loads(token, max_age=max_age_seconds)
    except BadData:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("uid"), int):
        return None
    user = db.session.scalar(select(User).where(User.id == data["uid"]))
    if user is None or not user.is_active:
        return None
    if not _state_matches(str(data.get("fp", "")), purpose, user):
        return None
    return user, data


def unchanged(user: User) -> ColumnElement[bool]:
    """SQL true while ``user``'s row still holds the state its links were checked against.

    The address and the stamp: every password change ends the user's sessions and so
    renews the stamp (``set_password`` renews it too), so the stamp stands for the password.
    """
    return and_(
        User.id == user.id,
        User.email == user.email,
        User.security_stamp == user.security_stamp,
    )


def claim(user: User, **values: Any) -> bool:
    """Act on a link once: store ``values`` and a new stamp if nothing changed since the
    link was read; False when another request got there first (the caller rolls back).

    On PostgreSQL the loser's UPDATE waits for the winner's row lock and then finds the new
    stamp; on SQLite it waits for the write lock. The new stamp ends every link of the
    account, the winner's included.
    """
    values["security_stamp"] = secrets.token_hex(16)
    won = affected_rows(db.session.execute(
        update(User)
        .where(unchanged(user))
        .values(**values)
        # Stamp, address, confirmation: no part of a user's API state (api.user_states);
        # a caller storing one that is (the password) does so through the ORM.
        .execution_options(synchronize_session=False, user_state_neutral=True)
    ))
    if won != 1:
        return False
    for key, value in values.items():
        set_committed_value(user, key, value)
    return True
