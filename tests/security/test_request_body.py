"""A body sent without Content-Length is refused past its limit, never cut short there.

Gunicorn and Werkzeug's server hand a chunked body over dechunked, with
``wsgi.input_terminated`` set and no Content-Length; Werkzeug then reads up to the
route's ``max_content_length`` and used to return that part as the whole body.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from flask import Flask
from flask.testing import FlaskClient

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
