"""A HEAD request changes nothing in the session: no flash message taken, no cookie rewritten,
no signed-in session kept alive.

Flask answers HEAD by running the GET view and dropping the body, so a page that shows a
flash message takes it out of the session. A link preview or a browser prefetch sending HEAD
would eat "your password is changed" before the person's own GET.
"""

from __future__ import annotations

from datetime import timedelta
from http.cookies import SimpleCookie
from typing import Any

import pytest
import requests
from flask import Flask, flash, get_flashed_messages
from flask.testing import FlaskClient
from sqlalchemy import select

from bastion.extensions import db
from bastion.models import User, UserSession, utcnow
from tests.factories import PASSWORD, UserFactory
from tests.support.account_fixtures import sign_in
from tests.support.accounts import post_form
from tests.support.auth import CSRF_RE
from tests.support.browser import serve

NEW_PW = "lilac harbour quietly 2031"
FLASHED = "Your password is changed."


def _change_password(client: FlaskClient) -> Any:
    return post_form(client, "/account", {"current": PASSWORD, "password": NEW_PW,
                                          "confirm": NEW_PW}, action="/account/password")


@pytest.mark.asvs("V3.5.3")
def test_head_leaves_the_flash_message_for_the_next_get(client: FlaskClient, user: User) -> None:
    sign_in(client, "alice")
    assert _change_password(client).status_code == 302
    head = client.head("/account")
    assert head.status_code == 200
    assert "Set-Cookie" not in head.headers
    page = client.get("/account")
    assert FLASHED in page.get_data(as_text=True)
    assert FLASHED not in client.get("/account").get_data(as_text=True)  # a GET takes it


@pytest.mark.asvs("V3.5.3", "V7.3.1")
def test_head_neither_writes_nor_extends_the_session_record(client: FlaskClient, user: User) -> None:
    """The idle limit counts what a person does: a HEAD is answered as the signed-in user
    (so a preview is no leak of what signed-out visitors see) but does not count as use."""
    sign_in(client, "alice")
    seen = utcnow() - timedelta(minutes=10)
    record = db.session.scalars(select(UserSession)).one()
    record.last_seen_at = seen
    db.session.commit()
    assert client.head("/account").status_code == 200  # still signed in
    db.session.expire_all()
    assert db.session.get(UserSession, record.id).last_seen_at == seen  # type: ignore[union-attr]
    assert client.get("/account").status_code == 200
    db.session.expire_all()
    assert db.session.get(UserSession, record.id).last_seen_at > seen  # type: ignore[union-attr]


@pytest.mark.asvs("V7.3.1")
def test_options_does_not_extend_the_session_either(client: FlaskClient, user: User) -> None:
    """Flask answers OPTIONS itself with the methods allowed, showing nothing: no use of
    the site either. Every minute one kept an idle session alive (and wrote its row)."""
    sign_in(client, "alice")
    seen = utcnow() - timedelta(minutes=10)
    record = db.session.scalars(select(UserSession)).one()
    record.last_seen_at = seen
    db.session.commit()
    assert client.options("/account").status_code == 200
    db.session.expire_all()
    assert db.session.get(UserSession, record.id).last_seen_at == seen  # type: ignore[union-attr]


@pytest.mark.asvs("V3.5.3")
def test_head_never_sets_a_cookie_get_does(make_app: Any) -> None:
    """The session interface itself: any change a view makes on HEAD stays unsaved."""
    from bastion.security.access import public

    app: Flask = make_app()

    @app.get("/_flash_set")
    @public
    def flash_set() -> str:
        flash("kept")
        return "set"

    @app.get("/_flash_take")
    @public
    def flash_take() -> str:
        return ",".join(get_flashed_messages())

    client = app.test_client()
    assert "Set-Cookie" not in client.head("/_flash_set").headers  # nothing saved on HEAD
    assert client.get("/_flash_take").get_data(as_text=True) == ""
    assert "Set-Cookie" in client.get("/_flash_set").headers
    assert "Set-Cookie" not in client.head("/_flash_take").headers
    assert client.get("/_flash_take").get_data(as_text=True) == "kept"


class _Browser:
    """Real HTTP with a cookie jar of its own: the session cookie is ``Secure``, and
    ``requests`` would not send it back to the plain-HTTP test server."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.cookies: dict[str, str] = {}
        self.http = requests.Session()

    def send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        cookie = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        resp = self.http.request(method, self.base + path, allow_redirects=False,
                                 headers={"Cookie": cookie} if cookie else {}, **kwargs)
        for header in resp.raw.headers.getlist("Set-Cookie"):
            for name, morsel in SimpleCookie(header).items():
                if morsel["max-age"] == "0" or not morsel.value:
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
        return resp

    def post_form(self, page: str, action: str, data: dict[str, str]) -> requests.Response:
        token = CSRF_RE.search(self.send("GET", page).text)
        assert token is not None
        return self.send("POST", action, data={"csrf_token": token.group(1), **data})


@pytest.mark.asvs("V3.5.3")
def test_over_http_a_head_between_the_action_and_the_page_loses_nothing(make_app: Any) -> None:
    live = serve(make_app())
    try:
        with live.app.app_context():
            UserFactory(username="alice", email="alice@example.org")  # type: ignore[no-untyped-call]
        browser = _Browser(live.url)
        signed_in = browser.post_form("/auth/login", "/auth/login",
                                      {"username": "alice", "password": PASSWORD})
        assert signed_in.status_code == 302
        changed = browser.post_form("/account", "/account/password", {
            "current": PASSWORD, "password": NEW_PW, "confirm": NEW_PW})
        assert changed.status_code == 302
        held = dict(browser.cookies)
        head = browser.send("HEAD", "/account")
        assert head.status_code == 200 and head.content == b""
        assert "Set-Cookie" not in head.headers
        assert browser.cookies == held
        assert FLASHED in browser.send("GET", "/account").text
    finally:
        live.stop()
