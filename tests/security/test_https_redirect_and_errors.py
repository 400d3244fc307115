"""A page with a form is never stored, also when the session already held its CSRF secret.

On the first visit Flask-WTF writes the secret into the session (the cookie changes, so the
answer is private anyway). On every later visit the session is untouched and only the
signed token in the page is new: the page is still this visitor's (a shared cache keeping
it would hand their token to the next visitor, whose every post is then refused as
forged), so it must still be ``no-store``.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient


@pytest.mark.asvs("V14.2.2", "V14.3.2")
@pytest.mark.parametrize("path", ["/auth/login", "/auth/register", "/auth/reset"])
def test_form_pages_stay_private_once_the_session_holds_the_secret(
    client: FlaskClient, path: str
) -> None:
    first = client.get(path)
    assert first.headers["Cache-Control"] == "no-store"
    assert first.headers.getlist("Set-Cookie")  # the secret went into the session
    again = client.get(path)
    assert again.status_code == 200
    assert not again.headers.getlist("Set-Cookie")  # nothing in the session changed
    assert 'name="csrf_token"' in again.get_data(as_text=True)
    assert again.headers["Cache-Control"] == "no-store"
    assert "Cookie" in again.headers.get("Vary", "")


@pytest.mark.asvs("V4.1.2", "V4.1.3")
@pytest.mark.parametrize(
    "scheme",
    ["javascript", "ftp", "data", "x", "x://evil.example/", "a://evil.example?",
     "javascript://evil.example/%0a"],
)
def test_https_redirect_always_names_https(make_app: Any, scheme: str) -> None:
    """The redirect to HTTPS rewrote ``http://`` in the request's URL, so a scheme the proxy
    passed on that was not ``http`` came back in ``Location`` as it was
    (``javascript://host/...``): a redirect to the same plain or bogus scheme, never to HTTPS."""
    app = make_app(FORCE_HTTPS=True, PROXY_HOPS=1)
    resp = app.test_client().get(
        "/auth/login?next=/x",
        headers={"X-Forwarded-Proto": scheme, "X-Forwarded-For": "203.0.113.9"},
        base_url="http://localhost",
    )
    assert resp.status_code == 308
    assert resp.headers["Location"] == "https://localhost/auth/login?next=/x"


@pytest.mark.asvs("V4.1.1")
def test_a_range_past_a_static_file_says_how_long_the_file_is(client: FlaskClient) -> None:
    """A 416 must name the representation's length (RFC 9110 15.5.17): the error handler
    kept only ``Allow`` and ``Retry-After`` of an error's headers and dropped it."""
    size = len(client.get("/static/favicon.svg").data)
    resp = client.get("/static/favicon.svg", headers={"Range": f"bytes={size + 10}-"})
    assert resp.status_code == 416
    assert resp.headers["Content-Range"] == f"bytes */{size}"
