"""Hostile review of the logs and error pages: secrets by their shape, what an unhandled
error writes, the error page of last resort and the inventory's account of a request line."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from jinja2 import ChoiceLoader, DictLoader

from bastion.observability.logging import JSONFormatter
from bastion.observability.redaction import redact_path, redact_url

PAT = "bst_" + "Q7" * 21 + "x"  # bst_ + token_urlsafe(32), as pats.py mints them
JWT = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiI3IiwidHlwIjoicmVmcmVzaCJ9.c2lnbmF0dXJlLWJ5dGVz"


def _lines(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(JSONFormatter().format(r) for r in caplog.records)


@pytest.mark.asvs("V14.2.1")
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", f"/api/v1/tokens/{PAT}"),  # revoking a token by its value, not its id
        ("GET", f"/api/v1/articles/{PAT}/x"),
        ("POST", f"/api/v1/auth/refresh/{JWT}"),  # a refresh token pasted into the URL
    ],
)
def test_an_access_token_in_a_path_never_reaches_the_logs(
    client, caplog, method: str, path: str  # type: ignore[no-untyped-def]
) -> None:
    """The query string is never logged, but the path is: an API client that put its
    personal access token or refresh token in the path wrote a live credential to every
    log reader (Sentry already hid both by their shape)."""
    caplog.set_level(logging.DEBUG, logger="bastion")
    client.open(path, method=method, headers={"Authorization": f"Bearer {PAT}"})
    text = _lines(caplog)
    assert '"path":"/api/v1/' in text  # the request was logged...
    assert PAT[4:20] not in text and JWT.split(".")[1] not in text  # ...without the token
    # CSP reports and gunicorn's refused targets go through the same redaction.
    reported = redact_url(f"https://localhost{path}?x=1")
    assert PAT[4:20] not in reported and JWT.split(".")[1] not in reported
    assert redact_path("/api/v1/articles/7") == "/api/v1/articles/7"


@pytest.mark.asvs("V14.2.1", "V16.2.5")
def test_an_unhandled_error_quoting_secrets_logs_its_traceback_without_them(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    """Exceptions quote what they were given (``invalid literal for int(): 'bst_...'``,
    a library's "could not verify <token>"). Sentry's copy hid tokens and emailed links by
    their shape; the log line's ``exc`` kept them all."""
    from bastion.security.access import public

    app = make_app()
    link = "/auth/reset/eyJ1aWQiOjF9.LiveLinkSecret_0123456789"

    @public
    def explode() -> str:
        raise RuntimeError(f"could not reach mallory@example.org with {PAT} for {link} ({JWT})")

    app.add_url_rule("/explode", "explode", explode)
    caplog.set_level(logging.DEBUG, logger="bastion")
    resp = app.test_client().get("/explode")
    assert resp.status_code == 500
    (failure,) = [json.loads(JSONFormatter().format(r)) for r in caplog.records if r.exc_info]
    assert failure["msg"] == "unhandled error"
    assert "RuntimeError: could not reach" in failure["exc"] and "in explode" in failure["exc"]
    for secret in (PAT[4:20], "LiveLinkSecret", JWT.split(".")[1]):
        assert secret not in failure["exc"], secret


@pytest.mark.asvs("V16.5.1")
def test_the_error_page_of_last_resort_still_gives_a_reference_and_the_headers(
    make_app: Callable[..., Flask],
) -> None:
    """When the error page itself cannot render (a template error, or the database gone
    while the page loads the signed-in user), the bare page that replaces it named no
    request id: the person had nothing to quote to support. Like every page it keeps the
    security headers and shows nothing of the failure."""
    app = make_app()
    broken = DictLoader({"errors/error.html": "{{ undefined_helper() }}"})
    app.jinja_env.loader = ChoiceLoader([broken, app.jinja_env.loader])  # type: ignore[list-item]
    resp = app.test_client().get("/nowhere", headers={"X-Request-ID": "quote-me-12345678"})
    page = resp.get_data(as_text=True)
    assert resp.status_code == 404 and resp.mimetype == "text/html"
    assert "There is nothing here" in page
    assert "quote-me-12345678" in page
    assert resp.headers["X-Request-ID"] == "quote-me-12345678"
    for header in ("Content-Security-Policy", "X-Content-Type-Options", "X-Frame-Options"):
        assert header in resp.headers, header
    assert "undefined" not in page and "Traceback" not in page


@pytest.mark.asvs("V16.1.1")
def test_the_inventory_names_every_field_of_the_request_log(client) -> None:  # type: ignore[no-untyped-def]
    """The inventory is what operators and privacy reviews rely on: the request log also
    records the client's address (personal data), which its row left out."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    request_log = logging.getLogger("bastion.request")
    request_log.addHandler(handler)
    try:
        request_log.setLevel(logging.INFO)
        client.get("/healthz")
    finally:
        request_log.removeHandler(handler)
        request_log.setLevel(logging.NOTSET)
    fields = set(json.loads(JSONFormatter().format(records[-1]))) - {"ts", "level", "logger", "msg"}
    words = {"request_id": "request id", "user_id": "user id", "method": "method",
             "path": "path", "status": "status", "duration_ms": "duration",
             "ip": "client address"}
    assert fields <= set(words), fields - set(words)
    root = Path(__file__).resolve().parents[2]
    inventory = (root / "docs" / "security.md").read_text(encoding="utf-8")
    row = next(line for line in inventory.splitlines() if line.startswith("| app request log |"))
    events = row.split("|")[2]
    assert [words[f] for f in sorted(fields) if words[f] not in events] == []
    assert re.search(r"client address", events)


@pytest.mark.asvs("V14.2.1", "V16.2.5")
@pytest.mark.parametrize(
    "path", ["/auth/reset/eyJ1aWQiOjF9.LiveLinkSecret_0123456789", f"/api/v1/tokens/{PAT}"]
)
def test_a_failure_after_the_view_logs_no_secret_of_the_path(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture, path: str
) -> None:
    """A failure no handler of ours takes (a response hook, or an error handler, that
    raises) goes to Flask's own ``log_exception``, whose line reads "Exception on <path>
    [GET]" with the path as it came: a live reset link or access token in the log."""
    app = make_app()

    @app.after_request
    def fail(_response: object) -> object:
        raise RuntimeError("a response hook failed")

    caplog.set_level(logging.DEBUG, logger="bastion")
    resp = app.test_client().open(path, method="DELETE" if "/api/" in path else "GET")
    assert resp.status_code == 500
    text = _lines(caplog)
    assert "a response hook failed" in text  # the failure is logged...
    for secret in ("LiveLinkSecret", PAT[4:20]):
        assert secret not in text, secret  # ...without the path's secret
