"""Signed-in test clients per role, form posts that carry the session's CSRF token, and the
user row as the database now has it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from bastion.extensions import db
from bastion.models import User
from tests.support.auth import CSRF_RE, AuthActions

# Typed into a deletion's "type the username" box (the admin's or the holder's own), each
# with what the form answers: never the account's username, so nothing may be deleted.
WRONG_CONFIRMATIONS = [
    ("someone-else", "Type the username"),
    ("", "This field is required."),
    ("x" * 33, "Field cannot be longer than 32 characters."),
    ("someone\x00", "not allowed"),
]


def age_reauthentication(user: Any, minutes: float) -> None:
    """Make every session of ``user`` last re-authenticate ``minutes`` ago."""
    from datetime import timedelta

    from bastion.extensions import db
    from bastion.models import UserSession, utcnow

    db.session.execute(
        db.update(UserSession)
        .where(UserSession.user_id == user.id)
        .values(reauth_at=utcnow() - timedelta(minutes=minutes))
    )
    db.session.commit()


def client_for(app: Flask, user: Any = None, *, via_form: bool = False) -> FlaskClient:
    """A new browser-like client, signed in as ``user``.

    By default the session is started with ``start_session``, the very call the login view
    makes after checking the password; that skips only the deliberately slow Argon2 check
    (about a second here), which the login tests cover. ``via_form=True`` uses the form.
    """
    from flask import session

    from bastion.auth.sessions import start_session
    from tests.factories import PASSWORD

    client = app.test_client()
    if user is None:
        return client
    if via_form:
        resp = AuthActions(client).login_fully(user, PASSWORD)
        assert resp.status_code == 302, f"login of {user.username} failed"
        return client
    with app.test_request_context("/auth/login", base_url="https://localhost"):
        start_session(user)
        value = app.session_interface.get_signing_serializer(app).dumps(dict(session))  # type: ignore[attr-defined]
    client.set_cookie(
        app.config["SESSION_COOKIE_NAME"],
        value,
        domain="localhost",
        secure=True,
        httponly=True,
        samesite="Lax",
    )
    return client


def token(client: FlaskClient) -> str:
    """The session's CSRF token (any page with a form carries it)."""
    for path in ("/", "/auth/login"):
        match = CSRF_RE.search(client.get(path).get_data(as_text=True))
        if match:
            return match.group(1)
    raise AssertionError("no page offered a CSRF token")


def post(
    client: FlaskClient,
    path: str,
    data: dict[str, Any] | None = None,
    csrf: str | None = None,
    **kwargs: Any,
) -> TestResponse:
    """POST a form as the site's own page would (with the CSRF token)."""
    body = {"csrf_token": csrf or token(client), **(data or {})}
    return client.post(path, data=body, **kwargs)


@contextmanager
def rate_limits_off() -> Iterator[None]:
    """For tests about something else that send many requests from one address."""
    from bastion.extensions import limiter

    before = limiter.enabled
    limiter.enabled = False
    try:
        yield
    finally:
        limiter.enabled = before


def stored_user(user_id: int) -> User:
    """The user as committed now (the session's copy expired first): what a request made."""
    db.session.expire_all()
    user = db.session.get(User, user_id)
    assert user is not None
    return user
