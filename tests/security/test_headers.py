"""Security headers on pages, API answers and error pages alike."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.factories import PASSWORD, UserFactory

PATHS = ["/", "/auth/login", "/does-not-exist", "/api/v1/nothing-here", "/healthz"]
# Answers that are data (JSON), not documents: they get the empty, sandboxed policy.
DATA_PATHS = ["/api/v1/nothing-here", "/healthz", "/api/v1/articles", "/api/v1/openapi.json"]


# Powerful features a publishing site never uses: each denied to the page and its frames.
# (No WebAuthn here, so its credentials are denied too; no ``bluetooth``, which Chromium
# does not know, nor the obsolete ``interest-cohort``.)
DENIED_FEATURES = {
    "accelerometer", "browsing-topics", "camera", "clipboard-read", "compute-pressure",
    "display-capture", "geolocation", "gyroscope", "hid", "identity-credentials-get",
    "idle-detection", "local-fonts", "magnetometer", "microphone", "midi", "otp-credentials",
    "payment", "publickey-credentials-create", "publickey-credentials-get",
    "screen-wake-lock", "serial", "usb", "window-management", "xr-spatial-tracking",
}  # fmt: skip


def permissions_policy(header: str) -> set[str]:
    """The features ``header`` denies; fails on any it allows to anyone."""
    allowlists = dict(part.strip().split("=", 1) for part in header.split(","))
    assert set(allowlists.values()) == {"()"}, header
    return set(allowlists)


def csp_directives(header: str) -> dict[str, str]:
    return {
        part.strip().split(" ", 1)[0]: (part.strip().split(" ", 1) + [""])[1]
        for part in header.split(";")
        if part.strip()
    }


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.asvs("V3.4.1", "V3.4.2", "V3.4.3", "V3.4.4", "V3.4.5", "V3.4.6", "V3.4.8")
def test_every_answer_carries_the_security_headers(client: FlaskClient, path: str) -> None:
    resp = client.get(path)
    h = resp.headers
    assert h["Strict-Transport-Security"] == "max-age=63072000; includeSubDomains"
    assert h["X-Content-Type-Options"] == "nosniff"
    assert h["X-Frame-Options"] == "DENY"
    assert h["Referrer-Policy"] == "strict-origin-when-cross-origin"
    assert permissions_policy(h["Permissions-Policy"]) == DENIED_FEATURES
    assert h["Cross-Origin-Opener-Policy"] == "same-origin"
    assert h["Cross-Origin-Resource-Policy"] == "same-origin"
    assert "Server" not in h
    if path in DATA_PATHS:
        return  # their policy: test_data_answers_get_an_empty_sandboxed_policy
    csp = csp_directives(h["Content-Security-Policy"])
    assert csp["object-src"] == "'none'"
    assert csp["base-uri"] == "'none'"
    assert csp["frame-ancestors"] == "'none'"
    assert csp["form-action"] == "'self'"
    assert csp["default-src"] == "'self'"
    # Trusted Types: DOM XSS sinks refuse strings, and no policy may make trusted ones.
    assert csp["require-trusted-types-for"] == "'script'"
    assert csp["trusted-types"] == "'none'"
    assert "report-uri" in csp
    for directive in ("script-src", "style-src"):
        assert "unsafe-inline" not in csp[directive]
        assert "unsafe-eval" not in csp[directive]
        assert re.search(r"'nonce-[A-Za-z0-9+/=_-]{16,}'", csp[directive])


@pytest.mark.parametrize("path", DATA_PATHS)
@pytest.mark.asvs("V3.4.3", "V4.1.1")
def test_data_answers_get_an_empty_sandboxed_policy(client: FlaskClient, path: str) -> None:
    """JSON opened in a browser tab must not become a page of the site: nothing may load
    or run in it, it may not be framed, and it is sandboxed (an opaque origin)."""
    resp = client.get(path)
    assert resp.mimetype == "application/json" or resp.mimetype.endswith("+json")
    csp = csp_directives(resp.headers["Content-Security-Policy"])
    assert csp == {"default-src": "'none'", "base-uri": "'none'", "form-action": "'none'",
                   "frame-ancestors": "'none'", "sandbox": ""}
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.asvs("V3.4.3")
def test_nonce_is_fresh_for_every_request(client: FlaskClient) -> None:
    nonces = {
        re.search(r"'nonce-([^']+)'", client.get("/").headers["Content-Security-Policy"]).group(1)  # type: ignore[union-attr]
        for _ in range(5)
    }
    assert len(nonces) == 5


@pytest.mark.asvs("V14.3.2")
def test_signed_in_pages_are_not_cached(client: FlaskClient, auth, app: Flask) -> None:  # type: ignore[no-untyped-def]
    anonymous = client.get("/")
    assert "no-store" not in anonymous.headers.get("Cache-Control", "")
    user = UserFactory()
    auth.login(user.username, PASSWORD)
    resp = client.get("/")
    assert resp.headers["Cache-Control"] == "no-store"
    assert "Cookie" in resp.headers["Vary"]


@pytest.mark.asvs("V14.3.2")
@pytest.mark.parametrize("path", ["/auth/login", "/auth/register", "/auth/reset",
                                  "/auth/reset/some-link-token", "/setup/some-link-token",
                                  "/auth//reset/some-link-token"])
def test_pages_with_a_form_token_or_an_emailed_secret_are_not_cached(
    client: FlaskClient, path: str
) -> None:
    """A sign-in or reset form carries a CSRF token tied to this browser's session, and a
    reset page is opened by a secret link: neither belongs in a cache or in history."""
    resp = client.get(path)
    assert resp.status_code in (200, 308, 404)
    assert resp.headers.get("Cache-Control") == "no-store", path


@pytest.mark.asvs("V14.3.2")
def test_public_pages_stay_cacheable_after_a_form_was_seen(client: FlaskClient) -> None:
    """The CSRF token a sign-in form left in the session is not on the home page: that
    page keeps its ETag and no-cache (revalidated, 304) instead of no-store."""
    client.get("/auth/login")
    home = client.get("/")
    assert "no-store" not in home.headers.get("Cache-Control", "")
    assert home.headers.get("ETag")


@pytest.mark.asvs("V3.3.1", "V3.3.2", "V3.3.3")
def test_session_cookie_is_host_prefixed_secure_httponly_lax(client: FlaskClient, auth) -> None:  # type: ignore[no-untyped-def]
    user = UserFactory()
    resp = auth.login(user.username, PASSWORD)
    cookies = resp.headers.getlist("Set-Cookie")
    session_cookie = next(c for c in cookies if c.startswith("__Host-session="))
    attrs = {a.strip().split("=")[0].lower() for a in session_cookie.split(";")[1:]}
    assert {"secure", "httponly", "path"} <= attrs
    assert "samesite=lax" in session_cookie.lower()
    assert "domain=" not in session_cookie.lower()


@pytest.mark.asvs("V12.2.1", "V3.4.1")
def test_production_redirects_plain_http_to_https(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app(FORCE_HTTPS=True)
    plain = app.test_client()
    resp = plain.get("/auth/login?next=/x", base_url="http://localhost")
    assert resp.status_code == 308
    assert resp.headers["Location"] == "https://localhost/auth/login?next=/x"
    assert plain.get("/api/v1/articles", base_url="http://localhost").status_code in (403, 404)
    # A client claiming HTTPS itself is not believed without a configured proxy.
    spoofed = plain.get("/", headers={"X-Forwarded-Proto": "https"}, base_url="http://localhost")
    assert spoofed.status_code == 308


def test_answers_leave_the_date_header_to_the_server(make_app: Any) -> None:
    """Werkzeug's conditional answers add a Date and every server sends its own: the
    development server sent both (RFC 9110 allows one)."""
    app = make_app(PUBLIC_PAGE_CACHE_SECONDS=5)
    client = app.test_client()
    home = client.get("/")
    stylesheet = re.search(r'href="(/static/css/[^"]+)"', home.get_data(as_text=True))
    assert stylesheet is not None
    for resp in (home, client.get("/"), client.get(stylesheet.group(1)), client.get("/auth/login")):
        assert resp.status_code == 200
        assert "Date" not in resp.headers
