"""A promotion ends the sign-ins made under the lower role; the console refuses arguments
that are not text with a usage error, not a traceback."""

from __future__ import annotations

import pytest
from flask import Flask
from sqlalchemy import select

from bastion.extensions import db
from bastion.models import AuditEvent, User, UserSession
from tests.factories import UserFactory
from tests.support.roles import client_for, post


def _live_sessions(user_id: int) -> int:
    db.session.expire_all()
    return len(db.session.scalars(
        select(UserSession).where(UserSession.user_id == user_id, UserSession.revoked_at.is_(None))
    ).all())


@pytest.mark.asvs("V6.3.3", "V7.2.4", "V8.2.1")
def test_a_promotion_to_admin_ends_the_sessions_started_as_a_viewer(app: Flask) -> None:
    # A viewer's browser signed in before they turned 2FA on (or a viewer's cookie someone
    # copied): promoted, it became an admin session that never showed the second factor.
    viewer = UserFactory(two_factor=True)
    old_browser = client_for(app, viewer)
    assert old_browser.get("/account").status_code == 200
    boss = UserFactory(role_name="admin")

    resp = post(client_for(app, boss), f"/admin/users/{viewer.id}/role",
                {"role": "admin", "username": viewer.username})

    assert resp.status_code == 302
    page = old_browser.get("/admin/users")
    assert page.status_code == 302
    assert page.headers["Location"].startswith("/auth/login")
    assert _live_sessions(viewer.id) == 0
    (event,) = db.session.scalars(
        select(AuditEvent).where(AuditEvent.event == "user.role_changed")
    ).all()
    assert event.details == {"from": "viewer", "to": "admin"}


@pytest.mark.asvs("V7.2.4", "V8.2.1")
def test_a_promotion_from_the_console_ends_sessions_and_says_so(app: Flask) -> None:
    viewer = UserFactory(username="reader")
    client_for(app, viewer)
    result = app.test_cli_runner().invoke(args=["users", "set-role", "reader", "editor"])
    assert result.exit_code == 0, result.output
    assert "reader is now an editor. Their sessions ended" in result.output
    assert _live_sessions(viewer.id) == 0


@pytest.mark.asvs("V8.2.1")
def test_a_demotion_keeps_the_users_sessions(app: Flask) -> None:
    # Less power needs no new sign-in: every request checks the current role.
    editor = UserFactory(role_name="editor", username="writer")
    browser = client_for(app, editor)
    result = app.test_cli_runner().invoke(args=["users", "set-role", "writer", "viewer"])
    assert result.exit_code == 0, result.output
    assert "sessions ended" not in result.output
    assert _live_sessions(editor.id) == 1
    assert browser.get("/account").status_code == 200
    assert browser.get("/articles/new").status_code == 403


NOT_UTF8 = "\udcff"  # how Python passes on a byte that is not UTF-8 (e.g. Latin-1 "ÿ")


@pytest.mark.asvs("V2.2.1")
@pytest.mark.parametrize("args", [
    ["users", "disable", NOT_UTF8],
    ["users", "set-role", f"{NOT_UTF8}bob", "admin"],
    ["users", "reset-2fa", f"{NOT_UTF8}", "--reason", "video call, passport checked"],
    ["users", "reset-2fa", "target", "--reason", f"video call {NOT_UTF8} passport checked"],
    ["sessions", "revoke", f"a{NOT_UTF8}@example.org"],
    ["audit", "export", "--user", NOT_UTF8],
    ["audit", "export", "--event", f"login.{NOT_UTF8}"],
    ["create-admin", "--username", f"ops{NOT_UTF8}", "--email", "ops@example.org",
     "--password-stdin"],
], ids=["disable", "set-role", "reset-2fa", "reset-2fa-reason", "sessions", "audit-user",
        "audit-event", "create-admin-username"])
def test_arguments_that_are_not_utf8_are_a_usage_error(app: Flask, args: list[str]) -> None:
    """A name read from a Latin-1 file or typed in a non-UTF-8 terminal reached the database
    driver or the password hasher, which cannot encode it: a traceback, exit 1."""
    target = UserFactory(username="target", two_factor=True)
    result = app.test_cli_runner().invoke(args=args)
    assert result.exit_code == 2, (result.output, result.exception)
    assert "not UTF-8" in result.output
    assert "Traceback" not in result.output
    db.session.expire_all()
    assert db.session.get(User, target.id).totp_enabled_at is not None
    assert db.session.query(User).count() == 1
