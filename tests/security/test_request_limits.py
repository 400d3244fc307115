"""Malformed, oversized and odd requests get clear 4xx answers, never a 500."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient


@pytest.mark.asvs("V4.1.1")
def test_body_over_max_content_length_is_413(client: FlaskClient) -> None:
    resp = client.post(
        "/csp-report", data=b"x" * (2 * 1024 * 1024), content_type="application/csp-report"
    )
    assert resp.status_code == 413
    assert resp.mimetype == "application/problem+json"
    assert resp.json["status"] == 413


def test_too_many_form_parts_is_413(client: FlaskClient) -> None:
    data = {f"f{i}": "x" for i in range(500)}
    resp = client.post("/auth/login", data=data, content_type="multipart/form-data")
    assert resp.status_code == 413
    assert "too large" in resp.get_data(as_text=True)


def test_form_field_over_memory_limit_is_413(client: FlaskClient) -> None:
    resp = client.post(
        "/auth/login",
        data={"username": "x" * (300 * 1024), "password": "y"},
        content_type="multipart/form-data",
    )
    assert resp.status_code == 413


@pytest.mark.asvs("V2.2.1")
@pytest.mark.parametrize(
    ("body", "ctype", "status"),
    [
        (b"{not json", "application/csp-report", 400),
        (b"\xff\xfe\xfa", "application/csp-report", 400),
        (b'{"csp-report": {}}', "text/plain", 415),
    ],
)
def test_malformed_bodies_are_clear_4xx(
    client: FlaskClient, body: bytes, ctype: str, status: int
) -> None:
    resp = client.post("/csp-report", data=body, content_type=ctype)
    assert resp.status_code == status
    assert resp.json["detail"]


def test_invalid_utf8_in_form_is_not_a_500(client: FlaskClient) -> None:
    resp = client.post(
        "/auth/login",
        data=b"username=%ff%fe&password=\xff\xfe",
        content_type="application/x-www-form-urlencoded",
    )
    assert resp.status_code == 400  # CSRF token missing: refused before anything else


@pytest.mark.asvs("V13.4.4")
def test_unknown_method_is_405_with_allow(client: FlaskClient) -> None:
    resp = client.open("/healthz", method="BREW")
    assert resp.status_code == 405
    assert "GET" in resp.headers["Allow"]
    assert client.delete("/").status_code == 405
    trace = client.open("/", method="TRACE")
    assert trace.status_code == 405


@pytest.mark.asvs("V4.1.1")
@pytest.mark.parametrize("host", ["evil.test", "localhost.evil.test", "127.0.0.2"])
def test_untrusted_host_header_is_refused(app: Flask, host: str) -> None:
    client = app.test_client()
    resp = client.get("/", headers={"Host": host})
    assert resp.status_code == 400
    assert "evil" not in resp.get_data(as_text=True)


@pytest.mark.asvs("V16.5.1", "V13.4.5")
def test_errors_never_show_internals(make_app) -> None:  # type: ignore[no-untyped-def]
    from bastion.security.access import public

    app = make_app()

    @app.get("/boom-for-test")
    @public
    def boom() -> str:
        raise RuntimeError("secret internal detail")

    client = app.test_client()
    for path in ("/boom-for-test",):
        resp = client.get(path)
        assert resp.status_code == 500
        body = resp.get_data(as_text=True)
        assert "secret internal detail" not in body
        assert "Traceback" not in body
        assert "RuntimeError" not in body
        assert resp.headers["X-Request-ID"] in body
