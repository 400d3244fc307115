"""Business flows, session cookie exposure, API cross-site requests and clocks (V2, V3, V6, V7, V16)."""

from __future__ import annotations

import json
import logging
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from bastion.extensions import db
from bastion.models import Article, User, UserSession
from tests.factories import PASSWORD, ArticleFactory, UserFactory
from tests.support.account_fixtures import (  # noqa: F401 - fixtures
    enable_2fa,
    no_rate_limits,
    outbox,
    sign_in,
    totp_user,
    user,
)
from tests.support.accounts import Outbox, post_form, unused_code


def _signed_in(client: FlaskClient) -> bool:
    return client.get("/account").status_code == 200


# V2.3.1 ------------------------------------------------------------------------------
@pytest.mark.asvs("V2.3.1")
def test_the_2fa_step_cannot_be_reached_or_skipped_without_the_password_step(
    client: FlaskClient, totp_user: tuple[User, str]  # noqa: F811
) -> None:
    u, secret = totp_user
    # Straight to step 2 with a valid code: refused, sent back to step 1.
    resp = client.get("/auth/2fa")
    assert resp.status_code == 302 and "/auth/login" in resp.headers["Location"]
    token_page = client.get("/auth/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', token_page)
    assert csrf
    resp = client.post("/auth/2fa", data={"csrf_token": csrf.group(1),
                                          "code": unused_code(secret, u.totp_last_step)})
    assert resp.status_code == 302 and "/auth/login" in resp.headers["Location"]
    assert not _signed_in(client)
    # After step 1 only: still not signed in anywhere.
    resp = sign_in(client, "tess")
    assert resp.headers["Location"].endswith("/auth/2fa")
    assert not _signed_in(client)
    assert client.get("/articles/new").status_code in (302, 401, 403)


@pytest.mark.asvs("V2.3.1")
def test_password_reset_cannot_skip_the_emailed_link(
    client: FlaskClient, user: User, outbox: Outbox  # noqa: F811
) -> None:
    before = user.password_hash
    post_form(client, "/auth/reset", {"email": "alice@example.org"})
    real = outbox.link("alice@example.org", "/auth/reset/")
    forged = real[:-6] + ("AAAAAA" if not real.endswith("AAAAAA") else "BBBBBB")
    resp = post_form(client, "/auth/reset", {"password": "a fresh new passphrase",
                                             "confirm": "a fresh new passphrase"}, action=forged)
    assert resp.status_code in (400, 404)
    db.session.refresh(user)
    assert user.password_hash == before


@pytest.mark.asvs("V2.3.1")
def test_email_changes_only_after_the_new_address_confirms(
    client: FlaskClient, user: User, outbox: Outbox  # noqa: F811
) -> None:
    sign_in(client, "alice")
    resp = post_form(client, "/account", {"email": "new@example.org"}, action="/account/email")
    assert resp.status_code == 302
    db.session.refresh(user)
    assert user.email == "alice@example.org"
    link = outbox.link("new@example.org", "/account/email/")
    assert client.get(link).status_code == 200  # the confirmation page, still unchanged
    db.session.refresh(user)
    assert user.email == "alice@example.org"
    post_form(client, link, {})
    db.session.refresh(user)
    assert user.email == "new@example.org"


# V2.3.3 ------------------------------------------------------------------------------
class BoomError(RuntimeError):
    pass


def _explode(*_a: Any, **_k: Any) -> None:
    raise BoomError("the audit store failed")


@pytest.mark.asvs("V2.3.3")
def test_failed_password_change_leaves_no_half_state(
    client: FlaskClient, user: User, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    sign_in(client, "alice")
    other = client.application.test_client()
    sign_in(other, "alice")
    before = user.password_hash
    csrf = re.search(r'name="csrf_token"[^>]*value="([^"]+)"',
                     client.get("/account").get_data(as_text=True))
    assert csrf
    monkeypatch.setattr("bastion.security.audit.record", _explode)
    resp = client.post("/account/password", data={
        "csrf_token": csrf.group(1), "current": PASSWORD,
        "password": "a brand new passphrase", "confirm": "a brand new passphrase"})
    assert resp.status_code == 500
    monkeypatch.undo()
    db.session.expire_all()
    assert db.session.get(User, user.id).password_hash == before
    live = db.session.scalar(select(func.count()).select_from(UserSession).where(
        UserSession.user_id == user.id, UserSession.revoked_at.is_(None)))
    assert live == 2  # neither session was ended by the half-done change
    assert _signed_in(other)


@pytest.mark.asvs("V2.3.3")
def test_failed_disable_leaves_the_user_active(
    app: Flask, user: User, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    from bastion.admin.services import set_disabled

    monkeypatch.setattr("bastion.security.audit.record", _explode)
    with pytest.raises(BoomError):
        set_disabled(None, user, True)
    db.session.rollback()  # what the request teardown does
    db.session.expire_all()
    assert db.session.get(User, user.id).disabled_at is None


# V3.3.4 ------------------------------------------------------------------------------
@pytest.mark.asvs("V3.3.4")
def test_session_cookie_is_httponly_and_never_in_a_body(client: FlaskClient, user: User) -> None:  # noqa: F811
    resp = sign_in(client, "alice")
    set_cookie = [h for h in resp.headers.getlist("Set-Cookie") if h.startswith("__Host-session=")]
    assert set_cookie and "HttpOnly" in set_cookie[0]
    cookie = client.get_cookie("__Host-session")
    assert cookie is not None and len(cookie.value) > 20
    for path in ("/", "/account", "/articles", "/u/alice", "/auth/reauth", "/api/v1/openapi.json"):
        page = client.get(path)
        assert cookie.value not in page.get_data(as_text=True), path
        headers = {k: v for k, v in page.headers.items() if k.lower() != "set-cookie"}
        assert cookie.value not in json.dumps(headers), path


# V3.5.2 ------------------------------------------------------------------------------
@pytest.mark.asvs("V3.5.2", "V3.5.1")
@pytest.mark.parametrize("kind", ["form", "text", "multipart"])
def test_api_refuses_simple_cross_site_requests(
    client: FlaskClient, kind: str
) -> None:
    UserFactory(username="eddie", role_name="editor")
    sign_in(client, "eddie")  # the browser holds a session cookie
    body = {"title": "Cross-site", "body": "Planted", "publish": True}
    simple: dict[str, Any] = {
        "form": {"data": body},
        "text": {"data": json.dumps(body), "content_type": "text/plain"},
        "multipart": {"data": body, "content_type": "multipart/form-data"},
    }[kind]
    headers = {"Origin": "https://evil.example", "Referer": "https://evil.example/"}
    resp = client.post("/api/v1/articles", headers=headers, **simple)
    assert resp.status_code == 401
    assert resp.mimetype == "application/problem+json"
    # Even with a bearer token, only JSON is read.
    client._cookies.clear()  # type: ignore[attr-defined]
    access = client.post("/api/v1/auth/token",
                         json={"username": "eddie", "password": PASSWORD}).get_json()["access_token"]
    resp = client.post("/api/v1/articles", headers={"Authorization": f"Bearer {access}"}, **simple)
    assert resp.status_code == 415
    assert db.session.scalar(select(func.count()).select_from(Article)) == 0


# V6.3.4 ------------------------------------------------------------------------------
def _api_token(client: FlaskClient, username: str, password: str, **extra: str) -> Any:
    return client.post("/api/v1/auth/token",
                       json={"username": username, "password": password, **extra},
                       headers={"Cookie": ""})


@pytest.mark.asvs("V6.3.4")
@pytest.mark.usefixtures("no_rate_limits")
def test_web_failures_throttle_the_api_and_back(client: FlaskClient, app: Flask) -> None:
    free = app.config["LOGIN_THROTTLE_ACCOUNT_FREE"]
    UserFactory(username="webfirst", email="webfirst@example.org")
    UserFactory(username="apifirst", email="apifirst@example.org")
    for _ in range(free + 1):
        sign_in(client, "webfirst", "wrong password entirely")
    assert _api_token(client, "webfirst", PASSWORD).status_code == 429
    for _ in range(free + 1):
        _api_token(client, "apifirst", "wrong password entirely")
    assert sign_in(client, "apifirst").status_code == 429
    assert not _signed_in(client)


@pytest.mark.asvs("V6.3.4")
def test_web_and_api_both_demand_the_second_factor(
    client: FlaskClient, totp_user: tuple[User, str]  # noqa: F811
) -> None:
    assert totp_user[0].has_2fa
    assert _api_token(client, "tess", PASSWORD).status_code in (400, 401)
    assert _api_token(client, "tess", PASSWORD, otp="000000").status_code == 401
    resp = sign_in(client, "tess")
    assert resp.headers["Location"].endswith("/auth/2fa") and not _signed_in(client)


# V7.4.4 ------------------------------------------------------------------------------
SKIP_PREFIXES = ("/api/", "/static/", "/healthz", "/readyz", "/metrics", "/.well-known/",
                 "/uploads/")


@pytest.fixture
def signed_in_admin(client: FlaskClient, app: Flask) -> tuple[FlaskClient, User]:
    admin = UserFactory(username="root", email="root@example.org", role_name="admin", two_factor=False)
    secret = enable_2fa(admin)
    sign_in(client, "root")
    db.session.refresh(admin)
    post_form(client, "/auth/2fa", {"code": unused_code(secret, admin.totp_last_step)})
    assert _signed_in(client)
    return client, admin


@pytest.mark.asvs("V7.4.4")
def test_logout_is_on_every_signed_in_page(
    signed_in_admin: tuple[FlaskClient, User], app: Flask
) -> None:
    client, admin = signed_in_admin
    article = ArticleFactory(author=admin)
    values = {"id": article.id, "article_id": article.id, "username": admin.username}
    checked = []
    for rule in app.url_map.iter_rules():
        if "GET" not in (rule.methods or ()) or rule.rule.startswith(SKIP_PREFIXES):
            continue
        if any(arg not in values for arg in rule.arguments):
            continue  # pages reached through emailed links; not signed-in pages
        path = rule.rule
        for arg in rule.arguments:
            path = re.sub(rf"<(?:\w+:)?{arg}>", str(values[arg]), path)
        resp = client.get(path)
        if resp.status_code != 200 or resp.mimetype != "text/html":
            continue
        html = resp.get_data(as_text=True)
        assert re.search(r'<form[^>]+action="/auth/logout"[^>]*method="post"|'
                         r'<form[^>]+method="post"[^>]*action="/auth/logout"', html, re.I), path
        checked.append(path)
    assert len(checked) >= 8, checked
    assert {"/account", "/admin/users", "/articles/new"} <= set(checked)


# V16.2.2 -----------------------------------------------------------------------------
@pytest.mark.asvs("V16.2.2")
def test_log_timestamps_are_utc_whatever_the_host_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    from bastion.observability.logging import JSONFormatter

    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        record = logging.LogRecord("bastion.test", logging.INFO, __file__, 1, "hello", None, None)
        entry = json.loads(JSONFormatter().format(record))
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert entry["ts"].endswith("Z")
    logged = datetime.strptime(entry["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert abs(logged - datetime.fromtimestamp(record.created, UTC)) < timedelta(seconds=1)


@pytest.mark.asvs("V16.2.2")
def test_database_times_come_back_as_aware_utc(app: Flask, user: User) -> None:  # noqa: F811
    db.session.expire_all()
    fresh = db.session.get(User, user.id)
    assert fresh is not None
    for value in (fresh.created_at, fresh.password_changed_at, fresh.email_confirmed_at):
        assert value.tzinfo is not None and value.utcoffset() == timedelta(0)
        assert abs(datetime.now(UTC) - value) < timedelta(minutes=5)
