"""Attacks on the request log, the error handlers and the audit trail they write: each test
is an attack that used to work."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from bastion.extensions import db
from bastion.models import AuditEvent
from bastion.observability import counters
from bastion.observability.logging import JSONFormatter


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """What the production handler writes: every ``bastion`` record formatted as it is
    emitted, inside the request (the formatter reads the request id there)."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JSONFormatter())
    root = logging.getLogger("bastion")
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def _csrf_rows() -> list[AuditEvent]:
    return list(db.session.scalars(select(AuditEvent).where(AuditEvent.event == "csrf.failure")))


# ------------------------------------------------------------------- CSRF audit flood ---
@pytest.mark.asvs("V2.4.1", "V16.3.3")
def test_csrf_failures_from_one_client_store_one_audit_row_a_minute(app: Flask) -> None:
    """The CSRF check runs before any rate limit, for anyone, on every form: each POST
    without a token wrote one undeletable audit row, 400 requests 400 rows. Every failure
    is still counted; a client stores one row a minute, another client its own."""
    seen: list[str] = []

    def sink(name: str, _labels: dict[str, str]) -> None:
        seen.append(name)

    counters.add_sink(sink)
    try:
        client = app.test_client()
        statuses = {client.post("/auth/login", data={"username": "a"}).status_code
                    for _ in range(25)}
        other = app.test_client().post(
            "/auth/register", data={}, environ_base={"REMOTE_ADDR": "198.51.100.7"}
        )
    finally:
        counters._sinks.remove(sink)
    assert statuses == {400} and other.status_code == 400
    assert seen.count("csrf_failures") == 26
    rows = _csrf_rows()
    assert sorted(r.ip for r in rows) == ["127.0.0.1", "198.51.100.7"]
    assert {r.details["path"] for r in rows} == {"/auth/login", "/auth/register"}


# ---------------------------------------------------------------- unwritable log lines ---
@pytest.mark.asvs("V16.2.4", "V16.4.1", "V16.3.3")
def test_an_oversized_upload_with_a_huge_content_length_is_still_logged(
    app: Flask, json_log: io.StringIO, capsys: pytest.CaptureFixture[str]
) -> None:
    """orjson refuses integers beyond 64 bits. An anonymous POST declaring such a
    Content-Length (gunicorn accepts any digits) made the audit line unformattable: the
    event vanished from the JSON log and logging printed the raw record to stderr."""
    declared = "9" * 30
    resp = app.test_client().post(
        "/account/avatar",
        data=b"",
        environ_overrides={"CONTENT_LENGTH": declared,
                           "CONTENT_TYPE": "multipart/form-data; boundary=x"},
    )
    assert resp.status_code == 413
    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    audit = [line for line in lines if line["logger"] == "bastion.audit"]
    assert audit and audit[-1]["event"] == "upload.rejected"
    assert audit[-1]["details"]["content_length"] == int(declared)
    assert "Logging error" not in capsys.readouterr().err


@pytest.mark.asvs("V16.2.4", "V16.4.1")
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("count", 2**70),  # beyond 64 bits
        ("title", "a\ud800b"),  # a lone surrogate, as json.loads gives for "\ud800"
        ("details", {1: "one", (2, 3): "pair"}),  # keys that are not strings
    ],
    ids=["big-int", "lone-surrogate", "non-str-keys"],
)
def test_values_orjson_refuses_still_make_one_json_line(field: str, value: Any) -> None:
    record = logging.LogRecord("bastion.x", logging.WARNING, "", 0, "event", None, None)
    setattr(record, field, value)
    line = JSONFormatter().format(record)
    assert len(line.splitlines()) == 1 and line.isascii()
    parsed = json.loads(line)
    assert parsed["msg"] == "event" and parsed["level"] == "warning"
    assert field in parsed


# ---------------------------------------------------------------------- request ids ---
@pytest.mark.asvs("V16.4.1", "V16.5.3")
def test_a_request_id_ending_in_a_newline_is_replaced_not_a_500(app: Flask) -> None:
    """``$`` also matches before a final newline: "trace-12345678\\n" passed the check,
    reached every log line and audit row, and echoing it as a header raised, a 500."""
    resp = app.test_client().get(
        "/healthz", environ_overrides={"HTTP_X_REQUEST_ID": "trace-12345678\n"}
    )
    assert resp.status_code == 200
    assert len(resp.headers["X-Request-ID"]) == 32
    assert "trace" not in resp.headers["X-Request-ID"]


@pytest.mark.asvs("V2.4.1", "V16.3.3")
def test_a_strangers_oversized_uploads_store_one_audit_row_a_minute(app: Flask) -> None:
    """Refused while the form is read, before any rate limit: each anonymous oversized
    POST wrote an undeletable upload.rejected row."""
    client = app.test_client()
    statuses = {
        client.post("/account/avatar", data=b"",
                    environ_overrides={"CONTENT_LENGTH": str(10**9),
                                       "CONTENT_TYPE": "multipart/form-data; boundary=x"}
                    ).status_code
        for _ in range(12)
    }
    assert statuses == {413}
    rows = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "upload.rejected"))
    assert len(list(rows)) == 1


@pytest.mark.asvs("V16.3.3", "V16.5.3")
def test_sampled_refusals_stay_4xx_while_the_sampling_store_is_down(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CSRF failures, strangers' oversized uploads and CSP reports draw their audit sample
    from the limiter's store; with that store unreachable each stays its 4xx, never a 500.
    (Once Flask-Limiter notices, it falls back to per-process memory, where sampling goes
    on: so only the answers are asserted, not which rows were stored.)"""
    from redis.exceptions import ConnectionError as RedisConnectionError

    from bastion.extensions import limiter

    def down(*_args: Any, **_kwargs: Any) -> bool:
        raise RedisConnectionError("store unreachable")

    monkeypatch.setattr(limiter.limiter, "hit", down)
    client = app.test_client()
    assert client.post("/auth/login", data={"username": "a"}).status_code == 400
    assert client.post(
        "/account/avatar", data=b"",
        environ_overrides={"CONTENT_LENGTH": str(10**9),
                           "CONTENT_TYPE": "multipart/form-data; boundary=x"},
    ).status_code == 413
    report = {"csp-report": {"document-uri": "https://localhost/", "violated-directive": "x",
                             "blocked-uri": "inline"}}
    assert client.post("/csp-report", json=report,
                       headers={"Content-Type": "application/csp-report"}).status_code == 204
