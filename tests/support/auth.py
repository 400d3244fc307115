"""Sign in through the real login form (CSRF token and all)."""

from __future__ import annotations

import re

from flask.testing import FlaskClient
from werkzeug.test import TestResponse

CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


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

    def logout(self) -> TestResponse:
        token = csrf_token(self.client, "/")
        return self.client.post("/auth/logout", data={"csrf_token": token})
