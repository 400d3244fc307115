"""Fixtures shared by the auth and account tests (imported by their conftest files)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.factories import PASSWORD, UserFactory
from tests.support.accounts import Outbox, unused_code


@pytest.fixture
def outbox(app: Flask) -> Outbox:
    return Outbox(app)


@pytest.fixture
def no_rate_limits(app: Flask) -> Iterator[None]:
    """Route limits off, for tests that make many attempts on purpose (throttle stays on)."""
    from bastion.extensions import limiter

    limiter.enabled = False
    yield
    limiter.enabled = True


@pytest.fixture
def user(app: Flask) -> Any:
    return UserFactory(username="alice", email="alice@example.org")


def enable_2fa(user: Any) -> str:
    """Turn on TOTP for ``user`` through the service; returns the plain secret."""
    from bastion.auth import twofactor

    secret = twofactor.pending_secret(user)
    codes = twofactor.enable(user, unused_code(secret, None))
    assert codes is not None
    user._test_recovery_codes = codes
    return secret


@pytest.fixture
def totp_user(app: Flask) -> tuple[Any, str]:
    user = UserFactory(username="tess", email="tess@example.org")
    return user, enable_2fa(user)


def sign_in(client: FlaskClient, username: str, password: str = PASSWORD, **extra: str) -> Any:
    from tests.support.auth import csrf_token

    token = csrf_token(client, "/auth/login")
    return client.post("/auth/login", data={"username": username, "password": password,
                                             "csrf_token": token, **extra})


def is_signed_in(client: FlaskClient) -> bool:
    return client.get("/account").status_code == 200
