"""Bearer only: cookies never authenticate, CSRF tokens are no substitute, CORS is opt-in."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from bastion import create_app
from bastion.config import ConfigError
from bastion.extensions import db
from bastion.models import User
from tests.api.conftest import Api, bearer
from tests.factories import PASSWORD
from tests.support.auth import AuthActions, csrf_token


@pytest.mark.asvs("V3.5.1", "V8.3.1")
def test_a_signed_in_browser_cookie_does_not_authenticate_the_api(
    client: FlaskClient, make_user: Callable[..., User]
) -> None:
    user = make_user("editor")
    AuthActions(client).login(user.username, PASSWORD)
    assert client.get("/").status_code == 200
    token = csrf_token(client, "/")  # the sign-out form of a signed-in page
    for method, path, body in [
        ("GET", "/api/v1/me", None),
        ("POST", "/api/v1/articles", {"title": "T", "body": "B"}),
        ("PATCH", "/api/v1/me", {"bio": "csrf"}),
    ]:
        # Even with a valid CSRF token, in both the header and the body.
        resp = client.open(path, method=method, json=body, headers={"X-CSRFToken": token})
        assert resp.status_code == 401, (method, path)
        assert resp.mimetype == "application/problem+json"
    db.session.refresh(user)
    assert user.bio == ""


@pytest.mark.asvs("V3.5.1")
def test_bearer_requests_need_no_csrf_token(api: Api, make_user: Callable[..., User]) -> None:
    token = api.access_for(make_user("editor"))
    resp = api.call(
        "POST", "/articles", token, json={"title": "T", "body": "B"}, headers={"Referer": ""}
    )
    assert resp.status_code == 201


@pytest.mark.asvs("V3.4.2", "V4.1.1")
def test_cors_is_off_by_default(api: Api) -> None:
    resp = api.call("GET", "/openapi.json", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in resp.headers
    pre = api.call(
        "OPTIONS",
        "/me",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert "Access-Control-Allow-Origin" not in pre.headers


@pytest.mark.asvs("V3.4.2")
def test_cors_allowlist_by_setting(make_app: Callable[..., Flask]) -> None:
    app = make_app(CORS_ORIGINS="https://app.example.org, https://other.example.org")
    client = app.test_client()
    allowed = client.options(
        "/api/v1/me",
        headers={
            "Origin": "https://app.example.org",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://app.example.org"
    assert "Authorization" in allowed.headers["Access-Control-Allow-Headers"]
    assert "Access-Control-Allow-Credentials" not in allowed.headers
    assert "Origin" in allowed.headers["Vary"]
    denied = client.get("/api/v1/openapi.json", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in denied.headers


@pytest.mark.asvs("V3.4.2")
@pytest.mark.parametrize(
    "entry",
    ["null", "*", "http://app.example.org", "https://app.example.org/api", "https://App.example.org",
     "app.example.org", "https://app.example.org:99999"],
)
def test_an_allowlist_entry_that_is_no_https_origin_is_refused_at_start_up(
    tmp_path: Path, entry: str
) -> None:
    """"null" is what any sandboxed iframe sends, "*" and plain HTTP trust anyone on the
    way; a path or capitals never match a browser's Origin and only hide a typo."""
    base = {"ENV_NAME": "testing", "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"}
    with pytest.raises(ConfigError, match="BASTION_CORS_ORIGINS entry"):
        create_app({**base, "CORS_ORIGINS": f"https://ok.example.org, {entry}"})
    good = create_app({**base, "CORS_ORIGINS": "https://ok.example.org:8443, http://localhost/"})
    assert good.config["CORS_ORIGINS"] == {"https://ok.example.org:8443", "http://localhost"}


def test_responses_are_not_cached(api: Api, make_user: Callable[..., User]) -> None:
    resp = api.call("GET", "/me", api.access_for(make_user()))
    assert resp.headers["Cache-Control"] == "no-store"


def test_api_answers_with_a_www_authenticate_challenge(client: FlaskClient) -> None:
    resp = client.get("/api/v1/articles")
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"].startswith('Bearer realm="bastion"')
    assert bearer("x") == {"Authorization": "Bearer x"}


@pytest.mark.asvs("V4.1.2")
def test_plain_http_api_calls_are_refused_not_redirected(make_app: Callable[..., Flask]) -> None:
    app = make_app(FORCE_HTTPS=True)
    resp = app.test_client().get("/api/v1/openapi.json", base_url="http://localhost")
    assert resp.status_code == 403
    assert resp.mimetype == "application/problem+json"
    assert "Location" not in resp.headers


@pytest.mark.asvs("V4.1.2")
def test_the_api_documentation_page_over_plain_http_is_redirected(
    make_app: Callable[..., Flask],
) -> None:
    """``/api/docs`` is a page for people (no token): plain HTTP gets the 308 every page gets,
    not the API's refusal."""
    app = make_app(FORCE_HTTPS=True)
    resp = app.test_client().get("/api/docs", base_url="http://localhost")
    assert resp.status_code == 308
    assert resp.headers["Location"] == "https://localhost/api/docs"
