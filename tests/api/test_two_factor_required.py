"""Roles in ``REQUIRE_2FA_ROLES`` use the API only with a second factor, whatever the token.

The token endpoint refuses such a user without 2FA (test_auth_tokens); these tests cover
tokens obtained before the rule applied to them: an editor promoted to admin, an admin who
turns 2FA off, and their personal access tokens.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from bastion.admin import services as admin_services
from bastion.api import pats
from bastion.auth import twofactor
from bastion.auth.services import role_named
from bastion.extensions import db
from bastion.models import ApiToken, Article, AuditEvent, RefreshToken, User
from tests.api.conftest import Api, enable_totp, otp_for
from tests.factories import ArticleFactory, UserFactory

ENROL = "Your role requires two-factor authentication: enrol on the account page first."


def _refresh(api: Api, pair: dict[str, Any]) -> Any:
    return api.call("POST", "/auth/refresh", json={"refresh_token": pair["refresh_token"]})


def _assert_enrolment_refusal(resp: Any) -> None:
    assert resp.status_code == 403, resp.get_json()
    assert resp.mimetype == "application/problem+json"
    assert resp.get_json()["detail"] == ENROL


def _refresh_rows_revoked(user: User) -> bool:
    db.session.expire_all()
    rows = db.session.scalars(select(RefreshToken).where(RefreshToken.user_id == user.id)).all()
    return bool(rows) and all(row.revoked_at is not None for row in rows)


def _promote_quietly(user: User) -> None:
    """A role change that bypasses ``set_role`` (and so revokes nothing)."""
    user.role = role_named("admin")
    db.session.commit()


@pytest.mark.asvs("V6.3.3", "V7.4.1", "V8.2.1")
def test_a_promoted_editor_without_2fa_loses_the_api(
    api: Api, make_user: Callable[..., User]
) -> None:
    boss = make_user("admin")
    editor = make_user("editor")
    victim = ArticleFactory(title="Someone else's")
    pair = api.tokens_for(editor)
    assert api.call("GET", "/me", pair["access_token"]).status_code == 200

    admin_services.set_role(boss, editor, "admin")

    # The promotion ended the sign-in: no admin-scoped tokens by refreshing it...
    assert _refresh_rows_revoked(editor)
    assert _refresh(api, pair).status_code == 401
    # ...and the access token from before does nothing as an admin.
    resp = api.call("PATCH", f"/articles/{victim.id}", pair["access_token"],
                    json={"title": "Defaced"})
    assert resp.status_code in (401, 403)
    db.session.expire_all()
    assert db.session.get(Article, victim.id).title == "Someone else's"  # type: ignore[union-attr]


@pytest.mark.asvs("V6.3.3", "V9.2.2")
def test_a_refresh_is_refused_while_the_role_lacks_its_second_factor(
    api: Api, make_user: Callable[..., User]
) -> None:
    editor = make_user("editor")
    pair = api.tokens_for(editor)
    _promote_quietly(editor)  # nothing revoked: the refresh itself must say no

    resp = _refresh(api, pair)
    assert resp.status_code == 401
    assert resp.get_json()["detail"] == ENROL
    # The family is over: enrolling later does not bring this password-only sign-in back.
    assert _refresh_rows_revoked(editor)


@pytest.mark.asvs("V6.3.3", "V8.2.1", "V8.3.1")
def test_every_api_call_is_refused_while_the_role_lacks_its_second_factor(
    api: Api, make_user: Callable[..., User]
) -> None:
    editor = make_user("editor")
    access = api.tokens_for(editor)["access_token"]
    victim = ArticleFactory(title="Someone else's")
    _promote_quietly(editor)  # nothing revoked: the scope check itself must say no

    _assert_enrolment_refusal(api.call("GET", "/me", access))
    _assert_enrolment_refusal(api.call("GET", "/articles", access))
    _assert_enrolment_refusal(
        api.call("PATCH", f"/articles/{victim.id}", access, json={"title": "Defaced"})
    )
    db.session.expire_all()
    assert db.session.get(Article, victim.id).title == "Someone else's"  # type: ignore[union-attr]
    denied = db.session.scalars(
        select(AuditEvent).where(AuditEvent.event == "authz.denied")
    ).all()
    assert [e.details.get("reason") for e in denied] == ["2fa_required"] * 3
    assert all(e.actor_id == editor.id for e in denied)


@pytest.mark.asvs("V6.3.3", "V7.4.3")
def test_an_admin_who_turns_2fa_off_loses_admin_api_access(
    api: Api, make_user: Callable[..., User]
) -> None:
    admin = make_user("admin")
    victim = ArticleFactory(title="Someone else's")
    pair = api.tokens_for(admin, otp_for(admin))

    twofactor.disable(admin)  # what POST /account/2fa/disable does

    assert _refresh_rows_revoked(admin)
    assert _refresh(api, pair).status_code == 401
    resp = api.call("DELETE", f"/articles/{victim.id}", pair["access_token"])
    assert resp.status_code == 401  # the family was revoked with the factor
    # A token the revocation did not reach is refused all the same.
    _assert_enrolment_refusal(
        api.call("DELETE", f"/articles/{victim.id}", api.access_for(admin))
    )
    assert db.session.get(Article, victim.id) is not None


@pytest.mark.asvs("V6.3.3", "V8.2.1")
def test_a_personal_token_is_refused_once_its_admin_has_no_second_factor(
    api: Api, make_user: Callable[..., User]
) -> None:
    admin = make_user("admin")
    token = api.pat_for(admin, ["articles:read", "admin"])
    victim = ArticleFactory(title="Someone else's")
    assert api.call("GET", "/articles", token).status_code == 200

    twofactor.disable(admin)

    _assert_enrolment_refusal(api.call("GET", "/articles", token))
    _assert_enrolment_refusal(api.call("DELETE", f"/articles/{victim.id}", token))
    assert db.session.get(Article, victim.id) is not None


@pytest.mark.asvs("V6.3.3", "V8.2.1")
def test_a_promoted_editors_personal_token_is_refused(
    api: Api, make_user: Callable[..., User]
) -> None:
    boss = make_user("admin")
    editor = make_user("editor")
    token = api.pat_for(editor, ["articles:read", "articles:write"])
    assert api.call("GET", "/articles", token).status_code == 200

    admin_services.set_role(boss, editor, "admin")

    _assert_enrolment_refusal(api.call("GET", "/articles", token))


@pytest.mark.asvs("V6.3.3", "V8.2.1")
def test_no_personal_token_for_a_role_that_lacks_its_second_factor(app: Flask) -> None:
    admin = UserFactory(role_name="admin", two_factor=False)
    with pytest.raises(pats.TokenRequestError, match="two-factor"):
        pats.create(admin, name="ops", scopes=["admin"])
    assert db.session.scalar(select(ApiToken)) is None


@pytest.mark.asvs("V6.3.3", "V8.2.1")
def test_an_admin_who_enrols_again_gets_the_api_back(
    api: Api, make_user: Callable[..., User]
) -> None:
    admin = make_user("admin")
    token = api.pat_for(admin, ["articles:read", "admin"])
    twofactor.disable(admin)
    _assert_enrolment_refusal(api.call("GET", "/articles", token))

    enable_totp(admin)
    # Enrolled again: a sign-in with the code works, refreshes, and carries the admin scope.
    pair = api.tokens_for(admin, otp_for(admin))
    me = api.call("GET", "/me", pair["access_token"]).get_json()
    assert me["has_2fa"] is True
    assert "admin" in me["scopes"]
    assert _refresh(api, pair).status_code == 200
    assert api.call("GET", "/articles", token).status_code == 200
