"""Signed, expiring links for email confirmation, password reset and email change.

Each token is an itsdangerous signature over the user id and a fingerprint of the account's
email, password (the time it was last set) and security stamp. Once any of them changes, the
token no longer matches: every link dies when the password changes (a reset link is therefore single-use),
when the email changes (a confirmation or email-change link works once, and a reset link
mailed to an old address is dead), and when every session ends (password change, reset,
disabling, "sign out everywhere" renew the stamp), so an email change asked for from a
stolen session cannot be confirmed after the owner has thrown the thief out.
"""

from __future__ import annotations

import hmac
from typing import Any

from flask import current_app
from itsdangerous import BadData, URLSafeTimedSerializer
from sqlalchemy import select

from bastion.extensions import db
from bastion.models import User
from bastion.security.passwords import password_fingerprint
from bastion.security.tokens import keyed_digest

MAX_TOKEN_LENGTH = 512


def _serializer(purpose: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=f"bastion.{purpose}")


def fingerprint(value: str) -> str:
    """A keyed digest, so the (readable) token payload reveals nothing about the value."""
    return keyed_digest(b"", value)[:24]


def _state(purpose: str, user: User) -> str:
    # The password by the time it was set, in UTC (a sign-in that rehashes it changes
    # nothing), named as sessions and tokens name it.
    password = password_fingerprint(user.password_changed_at)
    return fingerprint("\0".join((purpose, user.email, password, user.security_stamp)))


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
    if not hmac.compare_digest(str(data.get("fp", "")), _state(purpose, user)):
        return None
    return user, data
