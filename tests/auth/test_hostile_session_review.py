"""Session management seen by someone holding a stolen cookie, a shared computer or a race:
what a password change carries over to the new session id, and how guesses at the current
password on the change form are counted."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from bastion.extensions import db
from bastion.models import AuditEvent, User, UserSession, utcnow
from tests.factories import PASSWORD
from tests.support.account_fixtures import is_signed_in, sign_in
from tests.support.accounts import post_form, unused_code
from tests.support.auth import csrf_token

NEW_PW = "lilac harbour quietly 2031"


def _pw_change(client: FlaskClient, current: str = PASSWORD, new: str = NEW_PW) -> Any:
    return post_form(client, "/account", {"current": current, "password": new, "confirm": new},
                     action="/account/password")


def _live() -> list[UserSession]:
    db.session.expire_all()
    return list(db.session.scalars(select(UserSession).where(UserSession.revoked_at.is_(None))))


def _sign_in_with_code(client: FlaskClient, user: User, secret: str, **extra: str) -> None:
    sign_in(client, user.username, **extra)
    user.totp_last_step = None
    db.session.commit()
    resp = post_form(client, "/auth/2fa", {"code": unused_code(secret, None)})
    assert resp.status_code == 302


@pytest.mark.asvs("V7.5.1", "V7.3.2")
@pytest.mark.parametrize("remember", [False, True])
def test_a_password_change_does_not_renew_freshness_or_lifetime(
    client: FlaskClient, totp_user: tuple[User, str], remember: bool
) -> None:
    """The password is not the second factor. A cookie stolen from a fresh session, with
    the password phished beside it, must not turn a password change into a new 10-minute
    window (email change, tokens) or a new 12-hour or 30-day lifetime: the new session
    id goes on with the old one's re-authentication time and end."""
    user, secret = totp_user
    _sign_in_with_code(client, user, secret, **({"remember": "y"} if remember else {}))
    [old] = _live()
    reauth_at = utcnow() - timedelta(minutes=9)
    expires_at = utcnow() + timedelta(minutes=20)
    old.reauth_at, old.expires_at = reauth_at, expires_at
    db.session.commit()
    assert _pw_change(client).status_code == 302
    assert is_signed_in(client)
    [new] = _live()
    assert new.id != old.id and new.remember is remember
    assert new.reauth_at == reauth_at
    assert new.expires_at == expires_at


@pytest.mark.asvs("V6.3.1", "V6.2.3")
def test_guesses_at_the_current_password_count_against_the_sign_in_throttle(
    app: Flask, client: FlaskClient, user: User, no_rate_limits: None, monkeypatch: Any
) -> None:
    """A stolen fresh cookie gives the change form to someone who does not know the
    password: each wrong current password is a guess like one on the sign-in form, counted
    against the same account and address, audited, and answered with a wait once the free
    attempts are spent. Nothing changes while the wait lasts."""
    monkeypatch.setitem(app.config, "LOGIN_THROTTLE_ACCOUNT_FREE", 3)
    monkeypatch.setitem(app.config, "LOGIN_THROTTLE_BASE_SECONDS", 30.0)
    sign_in(client, "alice")
    before = user.password_hash
    for n in range(3):
        resp = _pw_change(client, current=f"guess number {n} wrong")
        assert resp.status_code == 422
        assert b"current password is not right" in resp.data
    resp = _pw_change(client)
    assert resp.status_code == 429 and int(resp.headers["Retry-After"]) >= 1
    db.session.refresh(user)
    assert user.password_hash == before
    assert db.session.scalar(
        select(func.count()).select_from(AuditEvent)
        .where(AuditEvent.event == "password.change_failure")
    ) == 3
    # The same counter as the sign-in form's: that is waiting too.
    other = app.test_client()
    assert sign_in(other, "alice").status_code == 429


def _password_reset_by_owner(user: User) -> None:
    from bastion.auth.services import set_password
    from bastion.auth.sessions import revoke_all

    set_password(user, NEW_PW)
    revoke_all(user.id)


def _signed_out_everywhere_by_admin(user: User) -> None:
    from bastion.admin.services import sign_out_everywhere

    sign_out_everywhere(None, user)


def _disabled_and_enabled_again(user: User) -> None:
    from bastion.admin.services import set_disabled

    set_disabled(None, user, True)
    set_disabled(None, user, False)


@pytest.mark.asvs("V7.4.1", "V7.4.2")
@pytest.mark.parametrize(
    "owner_reacts",
    [_password_reset_by_owner, _signed_out_everywhere_by_admin, _disabled_and_enabled_again],
)
def test_a_pending_second_step_dies_when_the_owner_ends_every_sign_in(
    client: FlaskClient, totp_user: tuple[User, str], owner_reacts: Any
) -> None:
    """Whoever phished the password holds a pending-code marker for five minutes. The owner
    then changes the password, or an admin signs the account out everywhere or disables it
    for a moment: "every sign-in ends" includes the half-finished one. A code (phished
    too) must not then start a session, spend the owner's code, clear the throttle, or
    put a false "login.success" in the trail and a live stranger in the session list."""
    user, secret = totp_user
    assert sign_in(client, "tess").headers["Location"] == "/auth/2fa"
    token = csrf_token(client, "/auth/2fa")  # the code page, open before the owner reacts
    owner_reacts(user)
    user.totp_last_step = None
    db.session.commit()
    resp = client.post("/auth/2fa", data={"code": unused_code(secret, None), "csrf_token": token})
    assert resp.status_code == 302 and resp.headers["Location"] == "/auth/login"
    assert not is_signed_in(client)
    assert _live() == []
    db.session.refresh(user)
    assert user.totp_last_step is None  # the code was not spent
    successes = (
        select(func.count()).select_from(AuditEvent).where(AuditEvent.event == "login.success")
    )
    assert db.session.scalar(successes) == 0
    # The marker is gone from the cookie: the page asks for the password, not a code.
    again = client.get("/auth/2fa")
    assert again.status_code == 302 and again.headers["Location"] == "/auth/login"


def test_a_nul_byte_in_the_user_agent_cannot_stop_a_sign_in(app: Flask) -> None:
    """The session row keeps the User-Agent as the audit row does: PostgreSQL refuses NUL in
    text, so the right password answered 500 (the audit row was fixed, the session's not).
    Gunicorn refuses such a header; the development server, uWSGI and waitress pass it on."""
    from tests.factories import UserFactory

    user = UserFactory()
    client = app.test_client()
    client.environ_base["HTTP_USER_AGENT"] = "curl/8\x00<script>"
    resp = sign_in(client, user.username)
    assert resp.status_code == 302 and resp.headers["Location"] == "/"
    assert is_signed_in(client)
    assert [s.user_agent for s in _live()] == ["curl/8\ufffd<script>"]
