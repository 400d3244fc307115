"""A personal token made while "sign out everywhere" commits never outlives it.

The creating request passed its sign-in check before the sign-out committed; what it does
next decides whether a token survives the step the owner took to lock everyone out. The
sign-out runs in its own thread, app context and connection, at the two moments that
matter: just before the creation takes the user's lock (the creation must then be
refused) and while the creation holds it (the token is made, then revoked with the rest).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from flask import Flask, g
from flask.testing import FlaskClient
from sqlalchemy import select

from bastion.admin import services as admin
from bastion.api import pats
from bastion.extensions import db
from bastion.models import ApiToken, User
from tests.api.conftest import Api
from tests.factories import PASSWORD
from tests.support.auth import AuthActions, csrf_token


def _sign_out_everywhere(app: Flask, user_id: int, errors: list[BaseException]) -> threading.Thread:
    """Start the owner's "sign out everywhere" in a thread of its own."""

    def run() -> None:
        with app.app_context():
            try:
                user = db.session.get(User, user_id)
                assert user is not None
                admin.sign_out_everywhere(None, user)
            except BaseException as exc:  # asserted on by the test, not lost in the thread
                errors.append(exc)
            finally:
                db.session.remove()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@contextmanager
def _sign_out_around_the_lock(
    app: Flask, monkeypatch: pytest.MonkeyPatch, user_id: int, moment: str
) -> Iterator[None]:
    """Run the sign-out ``before`` the creation's lock (and wait for its commit), or start
    it ``during`` the lock and let it wait for the creation's commit."""
    real_lock = pats.lock_user
    errors: list[BaseException] = []
    threads: list[threading.Thread] = []

    def lock(uid: int) -> None:
        if moment == "before":
            thread = _sign_out_everywhere(app, user_id, errors)
            thread.join(30)
            assert not thread.is_alive(), "the sign-out hung"
            real_lock(uid)
        else:
            real_lock(uid)
            threads.append(_sign_out_everywhere(app, user_id, errors))

    monkeypatch.setattr(pats, "lock_user", lock)
    yield
    for thread in threads:
        thread.join(30)
        assert not thread.is_alive(), "the sign-out hung"
    assert not errors, errors
    db.session.expire_all()


def _live_tokens(user_id: int) -> list[ApiToken]:
    return list(db.session.scalars(
        select(ApiToken).where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
    ))


def _all_tokens(user_id: int) -> list[ApiToken]:
    return list(db.session.scalars(select(ApiToken).where(ApiToken.user_id == user_id)))


@pytest.mark.asvs("V7.4.1", "V7.4.5", "V2.3.3")
@pytest.mark.parametrize("moment", ["before", "during"])
def test_a_token_made_from_the_browser_never_outlives_sign_out_everywhere(
    app: Flask,
    client: FlaskClient,
    make_user: Callable[..., User],
    monkeypatch: pytest.MonkeyPatch,
    moment: str,
) -> None:
    user = make_user("editor")
    AuthActions(client).login(user.username, PASSWORD)
    for name in ("csrf_token", "_login_user", "session_record"):
        g.pop(name, None)
    form = {"csrf_token": csrf_token(client, "/account/tokens"), "name": "CI",
            "scopes": ["articles:read"], "days": "7"}

    with _sign_out_around_the_lock(app, monkeypatch, user.id, moment):
        resp = client.post("/account/tokens", data=form)

    assert _live_tokens(user.id) == []
    if moment == "before":
        assert resp.status_code == 302
        assert resp.headers["Location"].startswith("/auth/login")
        assert _all_tokens(user.id) == [], "nothing was written for the refused creation"
        page = client.get("/auth/login").get_data(as_text=True)
        assert "signed out while the token was being made" in page
    else:
        assert resp.status_code == 200  # shown once, and revoked by the sign-out after it
        assert len(_all_tokens(user.id)) == 1


@pytest.mark.asvs("V7.4.1", "V7.4.5", "V2.3.3")
@pytest.mark.parametrize("moment", ["before", "during"])
def test_a_token_made_through_the_api_never_outlives_sign_out_everywhere(
    app: Flask,
    api: Api,
    make_user: Callable[..., User],
    monkeypatch: pytest.MonkeyPatch,
    moment: str,
) -> None:
    user = make_user("editor")
    access = api.access_for(user)
    body = {"name": "t", "scopes": ["articles:read"], "password": PASSWORD}

    with _sign_out_around_the_lock(app, monkeypatch, user.id, moment):
        resp = api.call("POST", "/tokens", access, json=body)

    assert _live_tokens(user.id) == []
    if moment == "before":
        assert resp.status_code == 401, resp.get_json()
        assert "signed out while the token was being made" in resp.get_json()["detail"]
        assert _all_tokens(user.id) == []
    else:
        assert resp.status_code == 201, resp.get_json()
        secret = resp.get_json()["token"]
        assert api.call("GET", "/articles", secret).status_code == 401
