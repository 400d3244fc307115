"""CORS on the API's routing errors: an address that names nothing (404) or a method it
does not take (405) is answered by the router before the API blueprint's hooks run, so its
problem+json went out without the CORS headers and an allowed origin's script saw only a
network error ("Failed to fetch") instead of the answer it could act on."""

from __future__ import annotations

import pytest
from flask import Flask

from bastion.api import CORS_EXPOSE_HEADERS
from tests.api.conftest import Api

ORIGIN = "https://app.example.org"

ROUTING_ERRORS = [
    ("GET", "/api/v1/no-such-thing", 404),
    ("GET", "/api/v1//articles", 404),  # another spelling of an address (bastion.flask_app)
    ("GET", "/api/v1", 404),
    ("PUT", "/api/v1/articles", 405),
    ("DELETE", "/api/v1/me", 405),
]


@pytest.fixture
def allowed(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(app.config, "CORS_ORIGINS", {ORIGIN})


@pytest.mark.asvs("V3.4.2")
@pytest.mark.parametrize(("method", "path", "status"), ROUTING_ERRORS)
@pytest.mark.usefixtures("allowed")
def test_an_allowed_origin_may_read_a_routing_error(
    api: Api, method: str, path: str, status: int
) -> None:
    resp = api.client.open(path, method=method, headers={"Origin": ORIGIN})
    assert resp.status_code == status
    assert resp.mimetype == "application/problem+json"
    assert resp.get_json()["status"] == status
    assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert resp.headers["Access-Control-Expose-Headers"] == CORS_EXPOSE_HEADERS
    assert "Origin" in resp.vary
    assert "Access-Control-Allow-Credentials" not in resp.headers
    if status == 405:
        assert resp.allow  # the methods it does take, readable cross-origin too


@pytest.mark.asvs("V3.4.2")
@pytest.mark.parametrize(("method", "path", "status"), ROUTING_ERRORS)
@pytest.mark.usefixtures("allowed")
def test_another_origin_gets_no_cors_answer_on_a_routing_error(
    api: Api, method: str, path: str, status: int
) -> None:
    for headers in ({"Origin": "https://evil.example"}, {"Origin": "null"}, {}):
        resp = api.client.open(path, method=method, headers=headers)
        assert resp.status_code == status
        assert not any(h.lower().startswith("access-control-") for h, _ in resp.headers)
        assert "Origin" in resp.vary  # the answer differs by Origin, so caches must key on it


@pytest.mark.usefixtures("allowed")
def test_a_preflight_to_an_address_that_names_nothing_is_no_ok_answer(api: Api) -> None:
    """A preflight needs a 2xx: one to nowhere stays a 404, so the browser sends nothing."""
    resp = api.client.options(
        "/api/v1/no-such-thing",
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET"},
    )
    assert resp.status_code == 404
    assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN


@pytest.mark.usefixtures("allowed")
def test_pages_and_other_paths_get_no_cors_answer_on_a_routing_error(api: Api) -> None:
    for method, path in [
        ("GET", "/no-such-page"),
        ("POST", "/"),
        ("GET", "/api/v2/articles"),  # no API lives there
        ("GET", "/api/v10/articles"),
    ]:
        resp = api.client.open(path, method=method, headers={"Origin": ORIGIN})
        assert resp.status_code in (404, 405), path
        assert "Access-Control-Allow-Origin" not in resp.headers, path
    page = api.client.get("/no-such-page", headers={"Origin": ORIGIN})
    assert page.mimetype == "text/html"
    assert "Origin" not in page.vary


@pytest.mark.usefixtures("allowed")
def test_a_matched_route_keeps_its_cors_answer(api: Api) -> None:
    """The blueprint's own hook answers once, on success and on a view's error alike."""
    ok = api.client.get("/api/v1/openapi.json", headers={"Origin": ORIGIN})
    assert ok.status_code == 200
    refused = api.client.get("/api/v1/me", headers={"Origin": ORIGIN})  # no token
    assert refused.status_code == 401
    for resp in (ok, refused):
        assert resp.headers.getlist("Access-Control-Allow-Origin") == [ORIGIN]
        assert resp.headers.getlist("Access-Control-Expose-Headers") == [CORS_EXPOSE_HEADERS]
        assert [v for v in resp.vary if v == "Origin"] == ["Origin"]
