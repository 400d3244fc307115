"""The token settings page: signed-in, CSRF-protected, fresh re-authentication, shown once."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

import pytest
from flask import Flask, g
from flask.testing import FlaskClient
from sqlalchemy import func, select

from bastion.extensions import db
from bastion.models import ApiToken, User, UserSession, utcnow
from tests.api.conftest import bearer
from tests.factories import PASSWORD
from tests.support.auth import AuthActions, csrf_token


@pytest.fixture
def signed_in(client: FlaskClient, make_user: Callable[..., User]) -> tuple[FlaskClient, User]:
    user = make_user("editor")
    AuthActions(client).login(user.username, PASSWORD)
    # The ``app`` fixture keeps one app context for the whole test, so ``g`` outlives each
    # request; drop the CSRF token cached there before login cleared the session.
    for name in ("csrf_token", "_login_user", "session_record"):
        g.pop(name, None)
    return client, user


@pytest.mark.asvs("V7.5.1", "V3.5.1")
def test_create_shows_the_token_once_and_it_works(signed_in: tuple[FlaskClient, User]) -> None:
    client, _user = signed_in
    page = client.get("/account/tokens")
    assert page.status_code == 200
    assert "No tokens yet" in page.get_data(as_text=True)
    token = csrf_token(client, "/account/tokens")
    resp = client.post(
        "/account/tokens",
        data={"csrf_token": token, "name": "CI", "scopes": ["articles:read"], "days": "7"},
    )
    assert resp.status_code == 200
    secret = re.search(r'id="new-token"[^>]*>(bst_[^<]+)<', resp.get_data(as_text=True))
    assert secret, "the new token is shown"
    assert "__Host-session" not in resp.headers.get("Set-Cookie", "") or secret.group(1) not in str(
        resp.headers
    )
    listing = client.get("/account/tokens").get_data(as_text=True)
    assert secret.group(1) not in listing
    assert "CI" in listing
    api = client.application.test_client()
    assert api.get("/api/v1/articles", headers=bearer(secret.group(1))).status_code == 200


@pytest.mark.asvs("V3.5.1")
def test_create_without_csrf_token_is_refused(signed_in: tuple[FlaskClient, User]) -> None:
    client, _user = signed_in
    resp = client.post(
        "/account/tokens", data={"name": "CI", "scopes": ["articles:read"], "days": "7"}
    )
    assert resp.status_code == 400
    assert db.session.scalar(select(ApiToken)) is None


@pytest.mark.asvs("V7.5.1")
def test_stale_session_must_reauthenticate_first(signed_in: tuple[FlaskClient, User]) -> None:
    client, user = signed_in
    token = csrf_token(client, "/account/tokens")
    record = db.session.scalar(select(UserSession).where(UserSession.user_id == user.id))
    assert record is not None
    record.reauth_at = utcnow() - timedelta(minutes=11)
    db.session.commit()
    resp = client.post(
        "/account/tokens",
        data={"csrf_token": token, "name": "CI", "scopes": ["articles:read"], "days": "7"},
    )
    assert resp.status_code == 302
    assert "/auth/reauth" in resp.headers["Location"]
    assert db.session.scalar(select(ApiToken)) is None


def test_invalid_form_is_422_with_messages(signed_in: tuple[FlaskClient, User]) -> None:
    client, _user = signed_in
    token = csrf_token(client, "/account/tokens")
    resp = client.post("/account/tokens", data={"csrf_token": token, "name": "", "days": "999"})
    assert resp.status_code == 422
    html = resp.get_data(as_text=True)
    assert "Choose at least one scope." in html
    over = client.post(
        "/account/tokens", data={"csrf_token": token, "name": "x", "scopes": ["admin"], "days": "5"}
    )
    assert over.status_code == 422
    assert "Your role cannot grant: admin" in over.get_data(as_text=True)
    assert db.session.scalar(select(ApiToken)) is None
    # ...and the form offers only what the role can grant.
    assert 'value="articles:write"' in html and 'value="admin"' not in html


@pytest.mark.asvs("V2.2.1")
def test_the_form_uses_the_configured_expiry(
    app: Flask, signed_in: tuple[FlaskClient, User], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(app.config, "PAT_DEFAULT_DAYS", 7)
    monkeypatch.setitem(app.config, "PAT_MAX_DAYS", 20)
    client, _user = signed_in
    page = client.get("/account/tokens").get_data(as_text=True)
    days = re.search(r'<input[^>]*name="days"[^>]*>', page)
    assert days, "the expiry field is on the page"
    assert 'value="7"' in days.group(0)
    assert 'max="20"' in days.group(0)
    assert "1 to 20 days." in page
    token = csrf_token(client, "/account/tokens")
    over = client.post(
        "/account/tokens",
        data={"csrf_token": token, "name": "CI", "scopes": ["articles:read"], "days": "21"},
    )
    assert over.status_code == 422
    assert "between 1 and 20 days" in over.get_data(as_text=True)
    assert db.session.scalar(select(ApiToken)) is None


@pytest.mark.asvs("V8.2.2")
def test_revoke_own_token_only(
    signed_in: tuple[FlaskClient, User], make_user: Callable[..., User]
) -> None:
    from bastion.api import pats

    client, user = signed_in
    mine = pats.create(user, name="mine", scopes=["articles:read"]).record
    theirs = pats.create(make_user("editor"), name="theirs", scopes=["articles:read"]).record
    token = csrf_token(client, "/account/tokens")
    assert (
        client.post(f"/account/tokens/{theirs.id}/revoke", data={"csrf_token": token}).status_code
        == 404
    )
    resp = client.post(f"/account/tokens/{mine.id}/revoke", data={"csrf_token": token})
    assert resp.status_code == 302
    db.session.expire_all()
    assert db.session.get(ApiToken, mine.id).revoked_at is not None  # type: ignore[union-attr]
    assert db.session.get(ApiToken, theirs.id).revoked_at is None  # type: ignore[union-attr]


@pytest.mark.asvs("V16.3.2")
def test_revoking_someone_elses_token_on_the_page_is_audited(
    signed_in: tuple[FlaskClient, User], make_user: Callable[..., User]
) -> None:
    """The account page's revoke form shares the rule of ``DELETE /api/v1/tokens/<id>``:
    another account's token id is a 404, and the refusal is in the audit trail."""
    from bastion.api import pats
    from bastion.models import AuditEvent

    client, user = signed_in
    theirs = pats.create(make_user("editor"), name="theirs", scopes=["articles:read"]).record
    token = csrf_token(client, "/account/tokens")
    resp = client.post(f"/account/tokens/{theirs.id}/revoke", data={"csrf_token": token})
    assert resp.status_code == 404
    denied = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "authz.denied"))
    assert [(row.actor_id, row.details) for row in denied] == [
        (user.id, {"hidden": True, "what": f"revoke token {theirs.id}"})
    ]


def test_anonymous_visitors_are_sent_to_sign_in(client: FlaskClient) -> None:
    resp = client.get("/account/tokens")
    assert resp.status_code == 302
    assert "/auth/login" in resp.headers["Location"]


@pytest.mark.asvs("V2.2.1")
def test_a_name_with_a_nul_character_is_refused_not_a_server_error(
    signed_in: tuple[FlaskClient, User],
) -> None:
    # The form has no pattern like the API's schema; PostgreSQL cannot store NUL in text.
    client, _user = signed_in
    token = csrf_token(client, "/account/tokens")
    resp = client.post(
        "/account/tokens",
        data={"csrf_token": token, "name": "C\x00I", "scopes": ["articles:read"], "days": "7"},
    )
    assert resp.status_code == 422
    assert "must not contain NUL characters" in resp.get_data(as_text=True)
    assert db.session.scalar(select(ApiToken)) is None


def test_ended_tokens_are_listed_for_thirty_days_then_left_out(
    signed_in: tuple[FlaskClient, User], make_user: Callable[..., User]
) -> None:
    from bastion.api import pats
    from tests.api.conftest import Api

    client, user = signed_in
    now = utcnow()
    ages = {"live": None, "revoked-recently": 29, "revoked-long-ago": 31,
            "expired-recently": 29, "expired-long-ago": 31}
    for name, days in ages.items():
        record = pats.create(user, name=name, scopes=["articles:read"]).record
        if name.startswith("revoked") and days is not None:
            record.revoked_at = now - timedelta(days=days)
        elif name.startswith("expired") and days is not None:
            record.expires_at = now - timedelta(days=days)
    db.session.commit()
    listed = {"live", "revoked-recently", "expired-recently"}

    page = client.get("/account/tokens").get_data(as_text=True)
    assert "stay listed for 30 days" in page
    for name in ages:
        assert (f"<td>{name}</td>" in page) == (name in listed), name

    api = Api(client.application.test_client())
    resp = api.call("GET", "/tokens", api.access_for(user))
    assert resp.status_code == 200
    assert {t["name"] for t in resp.get_json()["items"]} == listed
    # Left out of the list, never deleted: the audit trail refers to them.
    assert db.session.scalar(
        select(func.count()).select_from(ApiToken).where(ApiToken.user_id == user.id)
    ) == len(ages)


@pytest.mark.asvs("V2.2.1")
@pytest.mark.parametrize("name", ["\u202eexe.gpj", "two\nlines", "esc\x1b[31m"])
def test_a_name_with_control_or_bidi_characters_is_refused_on_the_page(
    signed_in: tuple[FlaskClient, User], name: str
) -> None:
    client, _user = signed_in
    token = csrf_token(client, "/account/tokens")
    resp = client.post(
        "/account/tokens",
        data={"csrf_token": token, "name": name, "scopes": ["articles:read"], "days": "7"},
    )
    assert resp.status_code == 422
    assert "one line of visible text" in resp.get_data(as_text=True)
    assert db.session.scalar(select(ApiToken)) is None
