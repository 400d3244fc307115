"""Nothing is served that should not be: repository metadata, listings, odd methods."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient


@pytest.mark.asvs("V13.4.1", "V13.4.3")
@pytest.mark.parametrize(
    "path",
    ["/.git/config", "/.git/HEAD", "/static/", "/static/css/", "/static/../bastion/config.py",
     "/static/%2e%2e/config.py", "/.env", "/instance/secret_key", "/migrations/"],
)
def test_repository_files_and_listings_are_not_served(client: FlaskClient, path: str) -> None:
    resp = client.get(path)
    assert resp.status_code == 404
    body = resp.get_data(as_text=True)
    assert "SECRET" not in body and "[core]" not in body and "Index of" not in body


@pytest.mark.asvs("V13.4.4")
@pytest.mark.parametrize("path", ["/", "/auth/login", "/healthz"])
def test_trace_is_not_supported(client: FlaskClient, path: str) -> None:
    assert client.open(path, method="TRACE").status_code == 405


@pytest.mark.asvs("V4.1.1")
@pytest.mark.parametrize(
    ("path", "mimetype"),
    [("/", "text/html"), ("/healthz", "application/json"), ("/nope", "text/html"),
     ("/api/v1/nope", "application/problem+json"), ("/.well-known/security.txt", "text/plain"),
     ("/static/css/bastion.css", "text/css")],
)
def test_every_body_declares_its_type_and_charset(
    client: FlaskClient, path: str, mimetype: str
) -> None:
    resp = client.get(path)
    assert resp.mimetype == mimetype
    if mimetype.startswith("text/"):
        assert resp.mimetype_params.get("charset") == "utf-8"


@pytest.mark.asvs("V4.1.2")
def test_api_over_plain_http_is_refused_not_redirected(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app(FORCE_HTTPS=True)
    resp = app.test_client().get("/api/v1/anything", base_url="http://localhost")
    assert resp.status_code == 403
    assert "Location" not in resp.headers
    assert resp.mimetype == "application/problem+json"
