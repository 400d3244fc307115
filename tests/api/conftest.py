"""API fixtures: users with tokens obtained through the real endpoints."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from bastion.models import User
from tests.factories import PASSWORD, UserFactory
from tests.support.account_fixtures import enable_2fa
from tests.support.accounts import unused_code


def enable_totp(user: User) -> None:
    """Enrol through the accounts service (the secret is stored encrypted)."""
    user._test_totp_secret = enable_2fa(user)  # type: ignore[attr-defined]


def otp_for(user: User) -> str:
    """A code ``user`` has not used yet (enrolment itself used the current step)."""
    from bastion.extensions import db

    db.session.refresh(user)
    return unused_code(user._test_totp_secret, user.totp_last_step)  # type: ignore[attr-defined]


def forged_claims(user_id: int, **override: Any) -> dict[str, Any]:
    """The claims of an access token as we issue them, for ``user_id``, with ``override``
    (a None drops that claim): for tokens a test signs itself."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": "bastion",
        "aud": "bastion-api",
        "sub": str(user_id),
        "jti": "a" * 32,
        "typ": "access",
        "fam": "f" * 32,
        "iat": time.time(),  # after the user's password was set
        "nbf": now,
        "exp": now + 600,
    }
    claims.update(override)
    return {k: v for k, v in claims.items() if v is not None}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Api:
    """Thin JSON helper around the test client: no cookies, no CSRF, bearer only."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client

    def call(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> Any:
        headers = dict(kwargs.pop("headers", {}) or {})
        if token:
            headers.update(bearer(token))
        return self.client.open(f"/api/v1{path}", method=method, headers=headers, **kwargs)

    def tokens_for(self, user: User, otp: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"username": user.username, "password": PASSWORD}
        if otp:
            body["otp"] = otp
        resp = self.call("POST", "/auth/token", json=body)
        assert resp.status_code == 200, resp.get_json()
        return resp.get_json()  # type: ignore[no-any-return]

    def access_for(self, user: User) -> str:
        """A JWT minted directly: sign-in itself is tested in test_auth_tokens, and skipping
        the password hash here keeps the suite fast."""
        from bastion.api import tokens

        return tokens.issue_pair(user).access_token

    def pat_for(self, user: User, scopes: list[str], access: str | None = None) -> str:
        """A personal token made by the service (the endpoint is tested on its own)."""
        from bastion.api import pats

        return pats.create(user, name="t", scopes=scopes).secret

    def pat_via_api(self, user: User, scopes: list[str], access: str) -> str:
        body: dict[str, Any] = {"name": "t", "scopes": scopes, "password": PASSWORD}
        if user.has_2fa:
            body["otp"] = otp_for(user)
        resp = self.call("POST", "/tokens", access, json=body)
        assert resp.status_code == 201, resp.get_json()
        return str(resp.get_json()["token"])


@pytest.fixture
def api(client: FlaskClient) -> Api:
    client._cookies.clear()  # type: ignore[attr-defined]
    return Api(client)


@pytest.fixture
def make_user(app: Flask) -> Callable[..., User]:
    def make(role: str = "viewer", **kwargs: Any) -> User:
        if role == "admin":  # enrolled below through the real service, not by the factory
            kwargs.setdefault("two_factor", False)
        user: User = UserFactory(role_name=role, **kwargs)
        if role == "admin" and user.totp_enabled_at is None:
            enable_totp(user)
        return user

    return make
