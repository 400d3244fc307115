"""A sign-in whose password was right when the account's deletion committed: the holder
deleting it in another tab, or an admin, while the sign-in runs. Nothing may start for an
account that is gone, and the answer is a refused sign-in, not a 500."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from bastion.api import signin as api_signin
from bastion.api import tokens
from bastion.auth import routes as auth_routes
from bastion.extensions import db
from bastion.models import RefreshToken, User, UserSession
from tests.factories import PASSWORD, UserFactory
from tests.support.account_fixtures import enable_2fa
from tests.support.accounts import unused_code
from tests.support.auth import csrf_token
from tests.support.races import delete_user_elsewhere


def _deleted_after(app: Flask, monkeypatch: pytest.MonkeyPatch, owner: Any, name: str,
                   user_id: int) -> None:
    """``owner.name`` passes, then the account is deleted from another session."""
    original = getattr(owner, name)

    def then_deleted(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        delete_user_elsewhere(app, user_id)
        return result

    monkeypatch.setattr(owner, name, then_deleted)


def _nothing_left(user_id: int) -> None:
    db.session.expire_all()
    assert db.session.get(User, user_id) is None
    for model in (UserSession, RefreshToken):
        assert db.session.scalar(select(func.count()).select_from(model)) == 0


@pytest.mark.asvs("V16.5.1", "V16.5.3")
def test_a_password_sign_in_racing_the_deletion_is_refused(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = UserFactory(username="alice", email="alice@example.org")
    user_id = user.id
    _deleted_after(app, monkeypatch, auth_routes, "password_step", user_id)
    browser = app.test_client()
    resp = browser.post("/auth/login", data={
        "username": "alice", "password": PASSWORD, "csrf_token": csrf_token(browser, "/auth/login")})

    assert resp.status_code == 200
    assert auth_routes.GENERIC_FAILURE in resp.get_data(as_text=True)
    assert browser.get("/account").status_code == 302  # not signed in
    _nothing_left(user_id)


@pytest.mark.asvs("V16.5.1", "V16.5.3")
def test_a_second_step_racing_the_deletion_is_refused(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = UserFactory(username="tess", email="tess@example.org")
    secret, user_id = enable_2fa(user), user.id
    browser = app.test_client()
    browser.post("/auth/login", data={
        "username": "tess", "password": PASSWORD, "csrf_token": csrf_token(browser, "/auth/login")})
    _deleted_after(app, monkeypatch, auth_routes, "second_step", user_id)
    db.session.refresh(user)
    code = unused_code(secret, user.totp_last_step)
    resp = browser.post("/auth/2fa", data={
        "code": code, "csrf_token": csrf_token(browser, "/auth/2fa")})

    assert resp.status_code == 302
    assert resp.headers["Location"].startswith("/auth/login")
    assert browser.get("/account").status_code == 302
    _nothing_left(user_id)


@pytest.mark.asvs("V16.5.1", "V16.5.3")
def test_an_api_sign_in_racing_the_deletion_is_refused(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = UserFactory(username="alice", email="alice@example.org")
    user_id = user.id
    _deleted_after(app, monkeypatch, api_signin, "check_credentials", user_id)
    resp = app.test_client().post("/api/v1/auth/token",
                                  json={"username": "alice", "password": PASSWORD})

    assert resp.status_code == 401
    assert resp.headers["Content-Type"] == "application/problem+json"
    assert resp.get_json()["detail"] == api_signin.GENERIC_FAILURE
    _nothing_left(user_id)


@pytest.mark.asvs("V16.5.1", "V16.5.3")
def test_a_refresh_racing_the_deletion_is_refused(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = UserFactory(username="alice", email="alice@example.org")
    user_id = user.id
    pair = tokens.issue_pair(user)
    _deleted_after(app, monkeypatch, tokens, "user_for", user_id)
    resp = app.test_client().post("/api/v1/auth/refresh",
                                  json={"refresh_token": pair.refresh_token})

    assert resp.status_code == 401
    assert resp.headers["Content-Type"] == "application/problem+json"
    _nothing_left(user_id)
