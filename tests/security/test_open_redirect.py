"""Open redirects: a sign-in never sends the user to another site, whatever ``next`` says."""

from __future__ import annotations

import pytest
from flask import Flask

from bastion.security.redirects import is_safe_next
from tests.factories import PASSWORD, UserFactory
from tests.support.auth import AuthActions, csrf_token
from tests.support.roles import rate_limits_off

HOSTILE = [
    "//evil.test",
    "https://evil.test",
    "http://evil.test/path",
    "/\\evil.test",
    "\\\\evil.test",
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    "/%2F%2Fevil.test",
    "/%5Cevil.test",
    "/%252F%252Fevil.test",
    "///evil.test",
    "/\tt/\\evil.test",
    " //evil.test",
    "data:text/html,<script>alert(1)</script>",
    "evil.test",
]


@pytest.mark.asvs("V3.7.2")
@pytest.mark.parametrize("target", HOSTILE)
def test_hostile_next_targets_are_not_safe(target: str) -> None:
    assert not is_safe_next(target)


@pytest.mark.asvs("V3.7.2")
@pytest.mark.parametrize("target", [
    "/./account", "/a/../account", "/account/.", "/account/..", "/%2e%2e/account",
    "/.%2E/account", "/%252e/account", "/account/%2E?x=1",
])
def test_dot_segments_are_not_safe(target: str) -> None:
    """A browser resolves them before it asks: the page opened is not the path judged."""
    assert not is_safe_next(target)


@pytest.mark.asvs("V3.7.2")
def test_local_paths_are_safe() -> None:
    assert is_safe_next("/articles?page=2")
    assert is_safe_next("/u/ada#articles")
    assert is_safe_next("/articles?q=../notes/./draft")  # dots in the query are text
    assert is_safe_next("/static/site.v2.css")


@pytest.mark.asvs("V3.7.2")
def test_login_ignores_hostile_next(app: Flask) -> None:
    user = UserFactory()
    client = app.test_client()
    resp = AuthActions(client).login(user.username, PASSWORD, next="//evil.test")
    assert resp.headers["Location"] == "/"
    # Signed in, the login page sends the user on at once: the same check, for every target,
    # whether ``next`` comes in the query string or in the form.
    token = csrf_token(client, "/")
    with rate_limits_off():
        for target in HOSTILE:
            resp = client.get("/auth/login", query_string={"next": target})
            assert (resp.status_code, resp.headers["Location"]) == (302, "/"), target
            resp = client.post("/auth/login", data={"next": target, "csrf_token": token})
            assert (resp.status_code, resp.headers["Location"]) == (302, "/"), target


@pytest.mark.asvs("V3.7.2")
def test_login_follows_a_local_next(app: Flask) -> None:
    user = UserFactory()
    resp = AuthActions(app.test_client()).login(user.username, PASSWORD, next="/articles?q=x")
    assert resp.headers["Location"] == "/articles?q=x"
