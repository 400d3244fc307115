"""CSRF, attacked: tokens carried across sessions or sign-ins, tokens put where the check
does not look, method overrides, malformed tokens and cookie-only posts to the API."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from bastion.extensions import db
from bastion.models import Article, Comment, UserSession
from tests.factories import PASSWORD, ArticleFactory, UserFactory
from tests.support.auth import AuthActions, csrf_token
from tests.support.queries import row_count
from tests.support.roles import client_for, token


def _signed_in(client: FlaskClient) -> bool:
    return client.get("/account").status_code == 200


@pytest.mark.asvs("V3.5.1")
def test_login_csrf_needs_a_token_of_the_victims_own_browser(app: Flask) -> None:
    """Signing a victim into the attacker's account: the attacker's own token, or none,
    from a browser that has never seen the site or has its own anonymous session."""
    attacker = UserFactory()
    attacker_client = app.test_client()
    stolen = csrf_token(attacker_client, "/auth/login")
    fresh = app.test_client()  # never visited the site
    browsing = app.test_client()
    browsing.get("/auth/login")  # has its own anonymous token
    for victim in (fresh, browsing):
        for data in (
            {"username": attacker.username, "password": PASSWORD},
            {"username": attacker.username, "password": PASSWORD, "csrf_token": stolen},
        ):
            resp = victim.post("/auth/login", data=data)
            assert resp.status_code == 400
            assert not _signed_in(victim)
    assert row_count(UserSession) == 0


@pytest.mark.asvs("V3.5.1")
def test_sign_out_without_the_token_keeps_the_session(app: Flask) -> None:
    user = UserFactory()
    client = client_for(app, user)
    for data in ({}, {"csrf_token": "forged"}, {"csrf_token": token(app.test_client())}):
        resp = client.post("/auth/logout", data=data)
        assert resp.status_code == 400
        assert _signed_in(client)


@pytest.mark.asvs("V3.5.1", "V7.2.4")
def test_a_token_from_before_sign_in_is_worthless_after_it(app: Flask) -> None:
    user = UserFactory()
    article = ArticleFactory()
    client = app.test_client()
    before = csrf_token(client, "/auth/login")
    assert AuthActions(client).login(user.username, PASSWORD).status_code == 302
    resp = client.post(f"/articles/{article.id}/comments", data={"body": "x", "csrf_token": before})
    assert resp.status_code == 400
    # And the session's own token after sign-in is a new one, and works.
    after = token(client)
    assert after != before
    resp = client.post(f"/articles/{article.id}/comments", data={"body": "x", "csrf_token": after})
    assert resp.status_code in (302, 303)
    # A token of the signed-in session is worthless once signed out.
    AuthActions(client).logout()
    assert not _signed_in(client)
    assert AuthActions(client).login(user.username, PASSWORD).status_code == 302
    resp = client.post(f"/articles/{article.id}/comments", data={"body": "y", "csrf_token": after})
    assert resp.status_code == 400
    assert row_count(Comment) == 1


@pytest.mark.asvs("V3.5.1")
def test_a_token_in_the_query_string_only_is_refused(app: Flask) -> None:
    article = ArticleFactory()
    client = client_for(app, article.author)
    good = token(client)
    resp = client.post(f"/articles/{article.id}/comments?csrf_token={good}", data={"body": "x"})
    assert resp.status_code == 400
    resp = client.post(f"/articles/{article.id}/delete?csrf_token={good}")
    assert resp.status_code == 400
    assert row_count(Comment) == 0 and row_count(Article) == 1


@pytest.mark.asvs("V3.5.1")
def test_a_post_cannot_be_turned_into_a_safe_method(app: Flask) -> None:
    """Overrides the other way: a tokenless POST claiming to be a GET still needs a token."""
    article = ArticleFactory()
    client = client_for(app, article.author)
    for how in (
        {"headers": {"X-HTTP-Method-Override": "GET"}},
        {"query_string": {"_method": "GET"}},
        {"data": {"_method": "GET"}},
    ):
        resp = client.post(f"/articles/{article.id}/delete", **how)  # type: ignore[arg-type]
        assert resp.status_code == 400
    assert row_count(Article) == 1


@pytest.mark.asvs("V3.5.1", "V2.2.1")
@pytest.mark.parametrize(
    "fields",
    [
        # The forged one first: the check reads the first field of the name.
        [("csrf_token", "forged"), ("csrf_token", "{good}")],
        [("csrf_token", ""), ("x-csrf_token", "forged")],
        [("csrf_token", "x" * 200_000)],
        [("csrf_token[]", "{good}")],
        [("csrf_token", "\x00")],
    ],
)
def test_odd_token_fields_are_a_400(app: Flask, fields: list[tuple[str, str]]) -> None:
    article = ArticleFactory()
    client = client_for(app, article.author)
    good = token(client)
    from werkzeug.datastructures import MultiDict

    data = MultiDict([(name, value.replace("{good}", good)) for name, value in fields])
    data.add("body", "x")
    for content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        resp = client.post(f"/articles/{article.id}/comments", data=data, content_type=content_type)
        assert resp.status_code in (400, 413), resp.status_code
    assert row_count(Comment) == 0


@pytest.mark.asvs("V3.5.1", "V2.2.1")
@pytest.mark.parametrize("value", [["{good}"], {"token": "{good}"}, 1, None, True])
def test_a_json_token_of_another_type_is_a_400(app: Flask, value: object) -> None:
    """A form route reads no JSON token at all: an array, object or number is no token."""
    import json

    article = ArticleFactory()
    client = client_for(app, article.author)
    good = token(client)
    body = json.dumps({"csrf_token": value, "body": "x"}).replace("{good}", good)
    resp = client.post(
        f"/articles/{article.id}/comments", data=body, content_type="application/json"
    )
    assert resp.status_code == 400
    assert row_count(Comment) == 0


@pytest.mark.asvs("V3.5.1", "V2.2.1")
@pytest.mark.parametrize(
    "content_type",
    [
        "application/x-www-form-urlencoded; charset=utf-16",
        "application/x-www-form-urlencoded; charset=utf-7",
        "application/x-www-form-urlencoded; charset=iso-8859-1",
    ],
)
def test_a_form_in_another_charset_is_a_clear_400(app: Flask, content_type: str) -> None:
    article = ArticleFactory()
    client = client_for(app, article.author)
    good = token(client)
    body = f"csrf_token={good}&body=caf\u00e9".encode("utf-16")
    resp = client.post(f"/articles/{article.id}/comments", data=body, content_type=content_type)
    assert resp.status_code == 400
    assert row_count(Comment) == 0


@pytest.mark.asvs("V3.5.2")
@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_the_api_ignores_the_cookie_of_a_simple_cross_site_post(
    app: Flask, content_type: str
) -> None:
    """What a form on another site can send without a preflight, cookie and all: the API
    answers as to a stranger (401), whatever the body."""
    user = UserFactory(role_name="editor")
    client = client_for(app, user)
    good = token(client)
    body = '{"title": "Planted", "body": "x", "publish": true}'
    for path in ("/api/v1/articles", "/api/v1/tokens", "/api/v1/auth/revoke"):
        resp = client.post(
            path,
            data=body if content_type == "text/plain" else {"title": "P", "csrf_token": good},
            content_type=content_type,
            headers={"Origin": "https://evil.example", "X-CSRFToken": good},
        )
        assert resp.status_code in ((401,) if "auth" not in path else (400, 401, 415)), (
            path,
            resp.status_code,
        )
    # The attacker's own password, posted from the victim's browser: tokens for the
    # attacker in an answer the page cannot read, and the browser still signed in as before.
    attacker = UserFactory()
    creds = {"username": attacker.username, "password": PASSWORD}
    resp = client.post(
        "/api/v1/auth/token",
        data=creds if content_type != "text/plain" else str(creds).replace("'", '"'),
        content_type=content_type,
        headers={"Origin": "https://evil.example"},
    )
    assert resp.status_code in (200, 415, 422), resp.status_code
    assert "Set-Cookie" not in resp.headers
    assert "Access-Control-Allow-Origin" not in resp.headers
    assert row_count(Article) == 0
    assert _signed_in(client)
    assert user.username.encode() in client.get("/account").data


@pytest.mark.asvs("V3.3.2")
def test_every_cookie_names_its_samesite(app: Flask) -> None:
    """Chromium lets a top-level cross-site POST carry a cookie set without SameSite for
    two minutes after it was set ("Lax+POST"); each cookie names SameSite itself."""
    user = UserFactory()
    client = app.test_client()
    page = client.get("/auth/login")  # the anonymous session, holding the form's token
    token_ = csrf_token(client, "/auth/login")
    resp = client.post(
        "/auth/login",
        data={
            "username": user.username,
            "password": PASSWORD,
            "remember": "y",
            "csrf_token": token_,
        },
    )
    assert resp.status_code == 302
    cookies = page.headers.getlist("Set-Cookie") + resp.headers.getlist("Set-Cookie")
    assert len(cookies) >= 2
    for cookie in cookies:
        assert "SameSite=Lax" in cookie or "SameSite=Strict" in cookie, cookie


@pytest.mark.asvs("V3.5.3", "V3.5.1")
def test_opening_a_mailed_link_changes_nothing_and_its_button_needs_the_token(
    app: Flask,
) -> None:
    """Confirmation, email-change and reset links are GETs a mail scanner or another site
    may open: only the page's own form, with its token, acts on them."""
    from bastion.account import services
    from bastion.auth import registration
    from bastion.models import User
    from tests.support.accounts import Outbox

    outbox = Outbox(app)
    user = UserFactory(username="alice", email="alice@example.org")
    password_hash = user.password_hash
    signed_in = client_for(app, user)
    with app.test_request_context("/", base_url="https://localhost"):
        registration.register("newbie", "newbie@example.org", "violet tractor morning 88")
        services.request_email_change(user, "alice.new@example.org")
        registration.request_reset("alice@example.org")
    links = [
        outbox.link("newbie@example.org", "/auth/confirm/"),
        outbox.link("alice.new@example.org", "/account/email/"),
        outbox.link("alice@example.org", "/auth/reset/"),
    ]
    for browser in (app.test_client(), signed_in):
        for link in links:
            assert browser.get(link).status_code == 200
            assert browser.head(link).status_code == 200
            data = {"password": "a whole new passphrase 9", "confirm": "a whole new passphrase 9"}
            assert browser.post(link, data=data).status_code == 400
    db.session.expire_all()
    newbie = db.session.scalar(db.select(User).where(User.username == "newbie"))
    assert newbie is not None and newbie.email_confirmed_at is None
    alice = db.session.get(User, user.id)
    assert alice is not None
    assert alice.email == "alice@example.org" and alice.password_hash == password_hash
    for link in links:  # each still works, from its page
        assert csrf_token(app.test_client(), link)


@pytest.mark.asvs("V3.5.1", "V7.2.4")
def test_each_step_of_a_two_factor_sign_in_has_its_own_token(app: Flask) -> None:
    """The password step's token cannot send the code, nor the code page's token a form of
    the signed-in session: a page left open in between acts on nothing."""
    import pyotp

    from tests.factories import TOTP_SECRET

    user = UserFactory(two_factor=True)
    article = ArticleFactory()
    client = app.test_client()
    login_token = csrf_token(client, "/auth/login")
    resp = client.post(
        "/auth/login",
        data={"username": user.username, "password": PASSWORD, "csrf_token": login_token},
    )
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/auth/2fa")
    code = pyotp.TOTP(TOTP_SECRET).now()
    assert (
        client.post("/auth/2fa", data={"code": code, "csrf_token": login_token}).status_code == 400
    )
    code_token = csrf_token(client, "/auth/2fa")
    assert code_token != login_token
    assert (
        client.post("/auth/2fa", data={"code": code, "csrf_token": code_token}).status_code == 302
    )
    assert _signed_in(client)
    for old in (login_token, code_token):
        resp = client.post(
            f"/articles/{article.id}/comments", data={"body": "x", "csrf_token": old}
        )
        assert resp.status_code == 400
    assert row_count(Comment) == 0


@pytest.mark.asvs("V3.5.1", "V3.5.3", "V2.2.1")
@pytest.mark.parametrize(
    "referer",
    [
        # Malformed: Flask-WTF parses the Referer of HTTPS posts with urlparse, which raises
        # on these; a 400, never a 500.
        "http://[bad",
        "https://localhost:99999/",
        "https://[::1",
        "",  # left out (rel=noreferrer, a no-referrer policy on the attacking page)
        "http://localhost/",  # this host over plain HTTP
        "https://localhost:8443/",  # another port of this host: same site, not same origin
        "https://blog.localhost/",  # a sibling host
        "https://localhost.evil.example/",
        "https://localhost@evil.example/",
    ],
)
def test_a_real_token_from_a_page_of_another_origin_is_refused(app: Flask, referer: str) -> None:
    """The token is the defence; the Referer check is the second one, and takes only this
    origin: a sibling host or port (same site, so the Lax cookie is sent) holding a token
    it read somehow still cannot post."""
    article = ArticleFactory()
    client = client_for(app, article.author)
    resp = client.post(
        f"/articles/{article.id}/comments",
        data={"body": "x", "csrf_token": token(client)},
        headers={"Referer": referer},
    )
    assert resp.status_code == 400
    assert row_count(Comment) == 0
