"""Sign in through the real login form (CSRF token and all)."""

from __future__ import annotations

import re
from typing import Any

from flask.testing import FlaskClient
from werkzeug.test import TestResponse

CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
# Return targets a form must never hand on: another site, in the spellings browsers follow.
FOREIGN_NEXT = (
    "https://evil.example/",
    "//evil.example",
    "/\\evil.example",
    "/%2F%2Fevil.example",
    "javascript:alert(1)",
)


def csrf_token(client: FlaskClient, path: str) -> str:
    html = client.get(path).get_data(as_text=True)
    match = CSRF_RE.search(html)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


class AuthActions:
    def __init__(self, client: FlaskClient) -> None:
        self.client = client

    def login(self, username: str, password: str, **extra: str) -> TestResponse:
        token = csrf_token(self.client, "/auth/login")
        data = {"username": username, "password": password, "csrf_token": token, **extra}
        return self.client.post("/auth/login", data=data)

    def login_fully(self, user: Any, password: str) -> TestResponse:
        """Sign in through the form, answering the 2FA step when the account has it on
        (factory users with ``two_factor`` share ``tests.factories.TOTP_SECRET``)."""
        resp = self.login(user.username, password)
        if resp.status_code == 302 and resp.headers["Location"].startswith("/auth/2fa"):
            import pyotp

            from tests.factories import TOTP_SECRET

            token = csrf_token(self.client, "/auth/2fa")
            code = pyotp.TOTP(TOTP_SECRET).now()
            resp = self.client.post("/auth/2fa", data={"code": code, "csrf_token": token})
        return resp

    def logout(self) -> TestResponse:
        token = csrf_token(self.client, "/")
        return self.client.post("/auth/logout", data={"csrf_token": token})
