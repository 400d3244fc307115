"""A body sent without Content-Length is refused past its limit, never cut short there.

Gunicorn and Werkzeug's server hand a chunked body over dechunked, with
``wsgi.input_terminated`` set and no Content-Length; Werkzeug then reads up to the
route's ``max_content_length`` and used to return that part as the whole body.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from flask import Flask
from flask.testing import FlaskClient
from gunicorn.http.body import Body, ChunkedReader
from gunicorn.http.unreader import IterUnreader

from bastion.extensions import db
from bastion.models import AuditEvent

CSP_LIMIT = 16 * 1024  # the report endpoint's own limit (bastion.main.routes.csp_report)
REPORT = orjson.dumps({"csp-report": {"blocked-uri": "inline", "violated-directive": "x"}})


def _chunked(client: FlaskClient, path: str, data: bytes, content_type: str) -> Any:
    """What a server that dechunks the body itself hands the app: no Content-Length."""
    return client.post(
        path,
        data=data,
        headers={"Content-Type": content_type, "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )


@pytest.mark.asvs("V4.2.1", "V2.2.1")
def test_a_report_past_the_limit_is_413_not_its_first_part(app: Flask) -> None:
    """The first 16 KiB were a valid report on their own: it was logged and audited (204)
    although the body sent was larger and, past the limit, no JSON at all."""
    padded = REPORT + b" " * (CSP_LIMIT - len(REPORT))
    client = app.test_client()
    resp = _chunked(client, "/csp-report", padded + b"}not JSON", "application/csp-report")
    assert resp.status_code == 413
    assert db.session.query(AuditEvent).filter_by(event="csp.report").count() == 0
    # Exactly the limit, and a body that says how long it is, are read as they are.
    assert _chunked(client, "/csp-report", padded, "application/csp-report").status_code == 204
    declared = client.post("/csp-report", data=padded, content_type="application/csp-report")
    assert declared.status_code == 204


@pytest.mark.asvs("V4.2.1")
def test_a_form_past_the_limit_is_413_not_its_first_fields(app: Flask) -> None:
    """Url-encoded forms are read whole too: the fields past the limit were dropped."""
    limit = app.config["MAX_CONTENT_LENGTH"]
    form = b"username=a&password=" + b"x" * limit + b"&csrf_token=t"
    resp = _chunked(app.test_client(), "/auth/login", form, "application/x-www-form-urlencoded")
    assert resp.status_code == 413


def _via_gunicorn(client: FlaskClient, path: str, chunked: bytes, content_type: str) -> Any:
    """A chunked body as gunicorn hands it over: its own reader, dechunking as the app reads."""
    body = Body(ChunkedReader(SimpleNamespace(), IterUnreader([chunked])))
    return client.post(
        path,
        headers={"Content-Type": content_type, "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input": body, "wsgi.input_terminated": True},
    )


@pytest.mark.asvs("V4.2.1", "V16.5.3")
@pytest.mark.parametrize(
    "framing",
    [b"-5\r\nhello\r\n0\r\n\r\n", b"0x5\r\nhello\r\n0\r\n\r\n", b"2\r\nhello\r\n0\r\n\r\n",
     b"5;\x01\r\nhello\r\n0\r\n\r\n"],
    ids=["negative-size", "0x-size", "overrun", "bad-extension"],
)
def test_a_chunked_body_the_server_cannot_dechunk_is_a_400(app: Flask, framing: bytes) -> None:
    """gunicorn raises its own parse errors (not OSError) when the app reads a broken chunk:
    every route that reads a body, anonymous ones first, answered 500 and logged a traceback.
    The API answers in problem+json as for any other bad input."""
    client = app.test_client()
    sent = [
        ("/csp-report", "application/csp-report"),
        ("/auth/login", "application/x-www-form-urlencoded"),  # the CSRF check reads it
        ("/api/v1/auth/token", "application/json"),
    ]
    for path, content_type in sent:
        resp = _via_gunicorn(client, path, framing, content_type)
        assert resp.status_code == 400, (path, resp.status_code)
        assert "not valid chunked transfer coding" in resp.get_data(as_text=True), path
    assert resp.mimetype == "application/problem+json"
    # Well-formed chunks through the same reader are read as they are.
    good = b"%x\r\n%s\r\n0\r\n\r\n" % (len(REPORT), REPORT)
    assert _via_gunicorn(client, "/csp-report", good, "application/csp-report").status_code == 204
