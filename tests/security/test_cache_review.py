"""What shared caches may keep: every answer states a policy, and nothing personal is shareable.

A response without Cache-Control is stored by a shared cache under its own default lifetime
(RFC 9111 4.2.2; a 404 too), and CDNs often keep anything whose name ends in ``.css``
whatever it holds ("web cache deception"). So a page tied to one visitor must say
``no-store`` wherever it is served, and every other answer must at least say how long.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient

from bastion.extensions import db
from bastion.models import UserSession, utcnow
from tests.factories import PASSWORD, ArticleFactory, UserFactory
from tests.support.roles import client_for


@pytest.mark.asvs("V14.2.2", "V14.3.2")
@pytest.mark.parametrize("path", ["/static/account.css", "/static/css/nope/x.js", "/static/"])
def test_signed_in_error_page_under_static_is_never_stored(app: Flask, path: str) -> None:
    """A missing static file gets the site's 404 page, rendered for the visitor: their
    account links and a CSRF token bound to their session. A cache that keeps ``*.css`` by
    name would hand that page, token and all, to whoever asks for the same URL next."""
    reader = client_for(app, UserFactory(role_name="editor", display_name="Eve Editor"))
    resp = reader.get(path)
    assert resp.status_code == 404
    assert 'name="csrf_token"' in resp.get_data(as_text=True)  # why it matters
    assert resp.headers["Cache-Control"] == "no-store"
    assert "Cookie" in resp.headers["Vary"]
    # The files themselves keep their own caching, signed in or not.
    asset = reader.get("/static/css/bastion.css")
    assert asset.status_code == 200
    assert "no-store" not in asset.headers["Cache-Control"]


@pytest.mark.asvs("V14.2.2", "V14.3.2")
@pytest.mark.parametrize("path", ["/", "/articles", "/does-not-exist"])
def test_page_showing_a_flash_message_is_never_stored(client: FlaskClient, path: str) -> None:
    """"You are signed out." is one visitor's state, and the answer rewrites their session
    cookie: stored by a cache, it would show the message and clear the cookie of others."""
    with client.session_transaction() as sess:
        sess["_flashes"] = [("info", "Your password is changed.")]
    resp = client.get(path)
    assert "Your password is changed." in resp.get_data(as_text=True)
    assert any(c.startswith("__Host-session=") for c in resp.headers.getlist("Set-Cookie"))
    assert resp.headers["Cache-Control"] == "no-store"
    assert "ETag" not in resp.headers


@pytest.mark.asvs("V14.2.2", "V14.3.2")
def test_answer_rewriting_an_ended_sessions_cookie_is_never_stored(app: Flask) -> None:
    """When a session has ended, the next page is anonymous but sets the cookie again,
    with the account's id in it: not something to hand to the next visitor."""
    browser = client_for(app, UserFactory())
    db.session.execute(
        UserSession.__table__.update().values(expires_at=utcnow() - timedelta(minutes=1))
    )
    db.session.commit()
    resp = browser.get("/")
    assert "Sign out" not in resp.get_data(as_text=True)
    assert any(c.startswith("__Host-session=") for c in resp.headers.getlist("Set-Cookie"))
    assert resp.headers["Cache-Control"] == "no-store"


@pytest.mark.asvs("V14.2.2")
@pytest.mark.parametrize(
    "path", ["/articles", "/articles?q=withdrawn", "/articles?page=2", "/does-not-exist",
             "/.well-known/security.txt", "/healthz"]
)
def test_public_answers_are_revalidated_by_shared_caches(client: FlaskClient, path: str) -> None:
    """Without a Cache-Control a shared cache keeps a listing by its own lifetime, still
    showing an article after it is unpublished or deleted; "no-cache" makes it ask."""
    resp = client.get(path)
    assert resp.headers["Cache-Control"] == "no-cache"


@pytest.mark.asvs("V14.2.2")
def test_listing_drops_a_withdrawn_article_for_a_revalidating_cache(client: FlaskClient) -> None:
    article = ArticleFactory(title="Withdrawn for legal reasons")
    first = client.get("/articles")
    assert "Withdrawn for legal reasons" in first.get_data(as_text=True)
    assert first.headers["Cache-Control"] == "no-cache"
    article.status, article.published_at = "draft", None
    db.session.commit()
    assert "Withdrawn for legal reasons" not in client.get("/articles").get_data(as_text=True)


@pytest.mark.asvs("V14.2.2", "V14.3.2")
def test_token_answers_are_never_stored(client: FlaskClient) -> None:
    """RFC 6749 5.1: an answer carrying tokens says no-store; so does any answer to a POST
    that did not choose a policy itself."""
    user = UserFactory()
    resp = client.post("/api/v1/auth/token", json={"username": user.username, "password": PASSWORD})
    assert resp.status_code == 200 and "refresh_token" in resp.get_json()
    assert resp.headers["Cache-Control"] == "no-store"
    report = client.post("/csp-report", json={"csp-report": {"blocked-uri": "inline"}})
    assert report.status_code == 204
    assert report.headers["Cache-Control"] == "no-store"


@pytest.mark.asvs("V14.3.2")
def test_anonymous_pages_keep_their_etag_and_revalidation(client: FlaskClient) -> None:
    """The stricter rules leave the shared anonymous pages as they were: no-cache, 304."""
    ArticleFactory()
    client.get("/auth/login")  # a form seen earlier leaves a token in the session
    home = client.get("/")
    assert home.headers["Cache-Control"] == "no-cache"
    again = client.get("/", headers={"If-None-Match": home.headers["ETag"]})
    assert again.status_code == 304
    assert again.headers["Cache-Control"] == "no-cache"
    assert "Set-Cookie" not in again.headers


def test_every_link_in_security_txt_answers(client: FlaskClient) -> None:
    """A researcher follows the file's links; a dead Policy URL hides the disclosure terms."""
    body = client.get("/.well-known/security.txt").get_data(as_text=True)
    links = [line.split(": ", 1)[1] for line in body.splitlines() if ": https://" in line]
    assert links
    for link in links:
        assert link.startswith("https://localhost/")
        assert client.get(link.removeprefix("https://localhost")).status_code == 200, link
