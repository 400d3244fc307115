"""Signed-in test clients per role, and form posts that carry the session's CSRF token."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.support.auth import CSRF_RE, AuthActions


def client_for(app: Flask, user: Any = None) -> FlaskClient:
    """A new browser-like client, signed in as ``user`` through the real login form."""
    from tests.factories import PASSWORD

    client = app.test_client()
    if user is not None:
        resp = AuthActions(client).login(user.username, PASSWORD)
        assert resp.status_code == 302, f"login of {user.username} failed"
    return client


def token(client: FlaskClient) -> str:
    """The session's CSRF token (any page with a form carries it)."""
    for path in ("/", "/auth/login"):
        match = CSRF_RE.search(client.get(path).get_data(as_text=True))
        if match:
            return match.group(1)
    raise AssertionError("no page offered a CSRF token")


def post(
    client: FlaskClient,
    path: str,
    data: dict[str, Any] | None = None,
    csrf: str | None = None,
    **kwargs: Any,
) -> TestResponse:
    """POST a form as the site's own page would (with the CSRF token)."""
    body = {"csrf_token": csrf or token(client), **(data or {})}
    return client.post(path, data=body, **kwargs)


@contextmanager
def rate_limits_off() -> Iterator[None]:
    """For tests about something else that send many requests from one address."""
    from bastion.extensions import limiter

    before = limiter.enabled
    limiter.enabled = False
    try:
        yield
    finally:
        limiter.enabled = before
