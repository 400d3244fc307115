"""Findings of a hostile review of the API's authentication, each proven by its attack."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import jwt
import pytest
from sqlalchemy import select, update

from bastion.api import tokens
from bastion.extensions import db
from bastion.models import RefreshToken, User, utcnow
from tests.api.conftest import Api


def _unverified(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})  # type: ignore[no-any-return]


def _signed_in_at(user: User, started: datetime) -> tokens.TokenPair:
    """A sign-in made at ``started`` and kept alive by rotation ever since: its latest
    refresh token is fresh, only the family's first member is as old as the sign-in."""
    pair = tokens.issue_pair(user)
    family = _unverified(pair.refresh_token)["fam"]
    db.session.execute(
        update(RefreshToken).where(RefreshToken.family_id == family).values(issued_at=started)
    )
    db.session.commit()
    return pair


def _refresh(api: Api, token: str) -> Any:
    return api.call("POST", "/auth/refresh", json={"refresh_token": token})


@pytest.mark.asvs("V7.3.2")
def test_rotation_never_extends_a_sign_in_past_the_refresh_lifetime(
    api: Api, make_user: Callable[..., User]
) -> None:
    """A stolen refresh token rotated every few days used to live for ever: each rotation
    granted a new full lifetime, so the password (and 2FA) were never asked again."""
    started = utcnow() - timedelta(days=13)
    pair = _signed_in_at(make_user(), started)
    deadline = (started + timedelta(days=14)).timestamp()

    resp = _refresh(api, pair.refresh_token)
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert _unverified(body["refresh_token"])["exp"] <= deadline
    assert _unverified(body["access_token"])["exp"] <= deadline
    newest = db.session.scalar(select(RefreshToken).order_by(RefreshToken.issued_at.desc()))
    assert newest is not None and newest.expires_at.timestamp() <= deadline


@pytest.mark.asvs("V7.3.2")
def test_a_sign_in_older_than_the_refresh_lifetime_cannot_be_rotated(
    api: Api, make_user: Callable[..., User]
) -> None:
    pair = _signed_in_at(make_user(), utcnow() - timedelta(days=14, minutes=1))
    resp = _refresh(api, pair.refresh_token)
    assert resp.status_code == 401
    assert resp.mimetype == "application/problem+json"
    assert db.session.scalar(select(RefreshToken).where(RefreshToken.used_at.is_not(None))) is None
    assert len(db.session.scalars(select(RefreshToken)).all()) == 1, "no new member"


@pytest.mark.asvs("V9.2.4", "V9.1.1")
def test_a_refresh_token_is_not_an_access_token_to_a_verifier_that_checks_only_aud(
    app: Any, api: Api, make_user: Callable[..., User]
) -> None:
    # Both are signed with the same key; only Bastion's own ``typ`` claim told them apart,
    # so another service verifying access tokens by key, issuer and audience took a
    # 14-day refresh token for one.
    pair = tokens.issue_pair(make_user("editor"))
    keyset = tokens.keyset()
    public = keyset.verifying_keys[keyset.active_kid]

    def verify_as_another_service(token: str) -> dict[str, Any]:
        return jwt.decode(  # type: ignore[no-any-return]
            token,
            public,
            algorithms=["EdDSA"],
            audience=app.config["JWT_AUDIENCE"],
            issuer=app.config["JWT_ISSUER"],
        )

    assert verify_as_another_service(pair.access_token)["typ"] == "access"
    with pytest.raises(jwt.InvalidAudienceError):
        verify_as_another_service(pair.refresh_token)
    assert _refresh(api, pair.refresh_token).status_code == 200


@pytest.mark.asvs("V9.2.4")
def test_a_refresh_token_from_before_its_own_audience_still_rotates_once(
    api: Api, make_user: Callable[..., User], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issued by the previous release (the access audience): it keeps working until it
    # expires, and an access token with the refresh audience is refused.
    monkeypatch.setattr(tokens, "_audience", lambda typ: "bastion-api")
    old = tokens.issue_pair(make_user("editor"))
    monkeypatch.undo()

    assert _refresh(api, old.refresh_token).status_code == 200
    assert _refresh(api, old.refresh_token).status_code == 401  # rotated: used once
    monkeypatch.setattr(tokens, "_audience", lambda typ: "bastion-api:refresh")
    odd = tokens.issue_pair(make_user("editor"))
    monkeypatch.undo()
    assert api.call("GET", "/me", odd.access_token).status_code == 401
