"""JSON request logs with a request id; secrets never written."""

from __future__ import annotations

import json
import logging
import re
import sys
from typing import Any

import pytest
from flask.testing import FlaskClient

from bastion.observability.logging import JSONFormatter


def _request_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "bastion.request"]


@pytest.mark.asvs("V16.2.1")
def test_request_id_is_kept_when_sane_and_echoed(client: FlaskClient, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO, logger="bastion")
    resp = client.get("/healthz", headers={"X-Request-ID": "abc12345-trace"})
    assert resp.headers["X-Request-ID"] == "abc12345-trace"
    line = json.loads(JSONFormatter().format(_request_records(caplog)[-1]))
    assert line["method"] == "GET" and line["path"] == "/healthz" and line["status"] == 200
    assert "duration_ms" in line and "user_id" in line


@pytest.mark.parametrize("bad", ["short", "x" * 300, "id\r\nInjected: 1", "<script>"])
@pytest.mark.asvs("V16.4.1")
def test_unsafe_request_id_is_replaced(client: FlaskClient, bad: str) -> None:
    resp = client.get("/healthz", headers={"X-Request-ID": bad.replace("\r\n", " ")})
    assert resp.headers["X-Request-ID"] != bad
    assert len(resp.headers["X-Request-ID"]) == 32


@pytest.mark.asvs("V16.2.5", "V14.2.1")
def test_secrets_are_never_logged(client: FlaskClient, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.DEBUG, logger="bastion")
    client.get("/healthz?token=supersecret-query-value")
    from tests.support.auth import csrf_token

    client.post(
        "/auth/login",
        data={"username": "nobody", "password": "hunter2-secret-value", "csrf_token": csrf_token(client, "/auth/login")},
    )
    fmt = JSONFormatter()
    text = "\n".join(fmt.format(r) for r in caplog.records)
    assert "supersecret-query-value" not in text
    assert "hunter2-secret-value" not in text
    record = logging.LogRecord("bastion.x", logging.INFO, "", 0, "m", None, None)
    record.password = "p4ss"  # type: ignore[attr-defined]
    record.details = {"api_token": "bst_abc", "ok": 1}  # type: ignore[attr-defined]
    record.changes = [{"refresh_token": "r3fr3sh", "id": 7}, ("pair", {"otp": "123456"})]  # type: ignore[attr-defined]
    out = json.loads(fmt.format(record))
    assert out["password"] == "**********" and out["details"]["api_token"] == "**********"
    assert out["details"]["ok"] == 1
    # Nested in lists too: a secret field inside a list of objects is still a secret field.
    assert out["changes"] == [{"refresh_token": "**********", "id": 7},
                              ["pair", {"otp": "**********"}]]


@pytest.mark.asvs("V16.2.5", "V14.2.1")
def test_every_route_with_a_secret_in_its_path_is_redacted(app) -> None:  # type: ignore[no-untyped-def]
    """A route whose path carries a token must be among the redacted prefixes."""
    from bastion.observability.redaction import LINK_PREFIXES, REDACTED, redact_path, redact_url

    secret_routes = [r.rule for r in app.url_map.iter_rules() if "token" in r.arguments]
    assert len(secret_routes) >= 4
    for rule in secret_routes:
        path = rule.replace("<token>", "SeCrEt-value")
        assert rule.startswith(LINK_PREFIXES), rule
        assert "SeCrEt" not in redact_path(path) and REDACTED in redact_path(path)
    # Unmatched (mangled) links too, also through repeated slashes (the router redirects
    # those to the link) and percent-encoding in reported URLs; other paths stay as they are.
    for mangled in ("/auth/reset/SeCrEt/extra", "/auth/reset//SeCrEt", "/auth//reset/SeCrEt"):
        assert redact_path(mangled) == f"/auth/reset/{REDACTED}", mangled
    assert redact_url("https://h//auth/reset/SeCrEt?x=1") == f"https://h/auth/reset/{REDACTED}"
    assert redact_url("https://h/auth/%72eset/SeCrEt") == f"https://h/auth/reset/{REDACTED}"
    assert redact_path("/articles/7") == "/articles/7"


@pytest.mark.asvs("V16.2.5", "V14.2.1")
@pytest.mark.parametrize("path", ["/auth/reset/", "/auth/confirm/", "/setup/", "/account/email/"])
def test_emailed_links_never_reach_the_request_log_or_the_audit_trail(
    client: FlaskClient, caplog, path: str  # type: ignore[no-untyped-def]
) -> None:
    """A log reader (shipper, SIEM, support) could otherwise use a live reset link."""
    from sqlalchemy import select

    from bastion.extensions import db
    from bastion.models import AuditEvent

    caplog.set_level(logging.DEBUG, logger="bastion")
    secret = "eyJ1aWQiOjF9.LiveLinkSecret_0123456789"
    client.get(path + secret)
    client.post(path + secret, data={"password": "x"})  # no CSRF token: a csrf.failure row
    text = "\n".join(JSONFormatter().format(r) for r in caplog.records)
    assert _request_records(caplog) and "LiveLinkSecret" not in text
    details = [str(e.details) for e in db.session.scalars(select(AuditEvent))]
    assert not any("LiveLinkSecret" in d for d in details), details


@pytest.mark.asvs("V16.2.5", "V14.2.1")
def test_csp_reports_keep_no_credentials_query_or_link_secret_of_their_urls(
    client: FlaskClient, caplog, monkeypatch: pytest.MonkeyPatch  # type: ignore[no-untyped-def]
) -> None:
    """Report URLs are kept as scheme, host and path: the ``user:password@`` of a URL is
    a credential like the query's token, and reached the log and the audit row."""
    from sqlalchemy import select

    import bastion.main.routes
    from bastion.extensions import db
    from bastion.models import AuditEvent

    # The audit row is sampled (one a minute per client, 30 for everyone): always take it.
    monkeypatch.setattr(bastion.main.routes, "first_this_minute", lambda *_args: True)
    caplog.set_level(logging.DEBUG, logger="bastion")
    report = {"csp-report": {
        "document-uri": "https://localhost/auth/reset/LiveLinkSecret_0123456789?token=QuerySecret1",
        "blocked-uri": "https://deploy:UrlPassword42@cdn.example/lib.js?code=QuerySecret2",
        "source-file": "https://localhost/app.js#access_token=FragmentSecret3",
        "violated-directive": "script-src",
    }}
    resp = client.post("/csp-report", json=report, headers={"Content-Type": "application/csp-report"})
    assert resp.status_code == 204
    text = "\n".join(JSONFormatter().format(r) for r in caplog.records)
    stored = [str(e.details) for e in db.session.scalars(select(AuditEvent))]
    assert "https://cdn.example/lib.js" in text and stored
    for secret in ("LiveLinkSecret", "QuerySecret", "UrlPassword42", "deploy:", "FragmentSecret"):
        assert secret not in text, secret
        assert not any(secret in row for row in stored), secret


@pytest.mark.asvs("V16.2.1")
def test_timestamps_are_utc_with_milliseconds_across_second_boundaries() -> None:
    """The formatter reuses the formatted second; each line must still get its own time."""
    fmt = JSONFormatter()
    stamps = []
    # 2026-01-01T00:00:00Z is 1767225600; out of order, as threads may log.
    for second, msecs in ((1767225599, 999), (1767225600, 1), (1767225599, 500), (1767225600, 250)):
        record = logging.LogRecord("bastion.x", logging.INFO, "", 0, "m", None, None)
        record.created, record.msecs = second + msecs / 1000, msecs
        stamps.append(json.loads(fmt.format(record))["ts"])
    assert stamps == [
        "2025-12-31T23:59:59.999Z",
        "2026-01-01T00:00:00.001Z",
        "2025-12-31T23:59:59.500Z",
        "2026-01-01T00:00:00.250Z",
    ]


def test_readyz_reports_database(client: FlaskClient) -> None:
    resp = client.get("/readyz")
    assert resp.status_code == 200
    assert resp.json["checks"]["database"] == "ok"


def test_readyz_is_503_when_the_database_is_unreachable(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app()
    from bastion.extensions import db

    with app.app_context():
        db.engine.dispose()
    app.config["SQLALCHEMY_DATABASE_URI"] = "postgresql+psycopg://u@127.0.0.1:9/none"
    # A fresh engine for the new URL: simulate a database that went away.
    with app.app_context():
        from sqlalchemy import create_engine

        db._app_engines[app][None] = create_engine(  # type: ignore[attr-defined]
            "postgresql+psycopg://u@127.0.0.1:9/none", connect_args={"connect_timeout": 1}
        )
    resp = app.test_client().get("/readyz")
    assert resp.status_code == 503
    assert resp.json["checks"]["database"] == "unavailable"
    assert app.test_client().get("/healthz").status_code == 200


def test_security_txt(client: FlaskClient) -> None:
    """RFC 9116: "Field: value" lines, one Contact URI, one Expires in the future (and no
    more than a year ahead) as an RFC 3339 time, the Canonical URL over HTTPS."""
    from datetime import UTC, datetime, timedelta

    resp = client.get("/.well-known/security.txt")
    assert resp.status_code == 200 and resp.mimetype == "text/plain"
    body = resp.get_data(as_text=True)
    fields = [line.split(": ", 1) for line in body.splitlines()]
    assert all(len(pair) == 2 for pair in fields), body
    named = {name: [v for n, v in fields if n == name] for name, _ in fields}
    assert len(named["Contact"]) == 1 and named["Contact"][0].startswith(("mailto:", "https://"))
    assert named["Canonical"] == ["https://localhost/.well-known/security.txt"]
    (expires,) = named["Expires"]
    assert expires.endswith("Z")
    now = datetime.now(UTC)
    assert now < datetime.fromisoformat(expires) <= now + timedelta(days=366)


@pytest.mark.asvs("V16.2.1")
@pytest.mark.parametrize("path", ["/articles/99999999999", "/api/v1/articles/99999999999"])
def test_a_request_refused_before_its_hooks_keeps_its_request_id(
    client: FlaskClient, caplog, path: str  # type: ignore[no-untyped-def]
) -> None:
    """Ids beyond the column range are refused by URL value preprocessors, which run before
    every before_request hook: the answer, its log line and its error body must still carry
    the request id (and a real duration), or the failure cannot be traced."""
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(JSONFormatter().format(record))  # type: ignore[method-assign]
    request_log = logging.getLogger("bastion.request")
    request_log.addHandler(handler)  # formats in the request, as the real handler does
    try:
        caplog.set_level(logging.INFO, logger="bastion")
        resp = client.get(path, headers={"X-Request-ID": "trace-12345678"})
    finally:
        request_log.removeHandler(handler)
    assert resp.status_code == 404
    assert resp.headers["X-Request-ID"] == "trace-12345678"
    assert b"trace-12345678" in resp.data  # the page's reference / the problem's request_id
    line = json.loads(lines[-1])
    assert line["request_id"] == "trace-12345678"
    assert 0 <= line["duration_ms"] < 60_000


@pytest.mark.asvs("V16.4.1")
@pytest.mark.parametrize(
    "sneaky", ["\u2028", "\u2029", "\x85", "\x9b", "\u202e", "\u2066", "\u200f", "\u061c",
               "\u200b", "\u2060", "\ufeff"], ids=repr
)
def test_log_lines_cannot_be_split_or_reordered_by_unicode_controls(
    client: FlaskClient, caplog, sneaky: str  # type: ignore[no-untyped-def]
) -> None:
    """JSON escapes only C0 controls; Unicode line separators, NEL, C1 controls (a CSI
    for terminals) and bidi overrides would reach the line as they are. Readers that split
    on them (``str.splitlines``, many log viewers) would see a forged second entry."""
    from urllib.parse import quote

    caplog.set_level(logging.INFO, logger="bastion")
    forged = '{"level":"critical","msg":"forged"}'
    client.get("/x" + quote(sneaky + forged))
    line = JSONFormatter().format(_request_records(caplog)[-1])
    assert len(line.splitlines()) == 1
    assert sneaky not in line
    assert json.loads(line)["path"] == "/x" + sneaky + forged  # escaped, not lost


@pytest.mark.asvs("V16.2.5", "V14.2.1")
def test_a_failed_statement_logs_no_parameters(
    client: FlaskClient, caplog, monkeypatch: pytest.MonkeyPatch  # type: ignore[no-untyped-def]
) -> None:
    """Two sign-ups racing for one address: the second insert fails on the unique index.
    SQLAlchemy's message quotes the statement's parameters (email, password hash), which
    then reached the error log and Sentry; only the statement may."""
    from bastion.auth import registration, services
    from tests.factories import UserFactory

    UserFactory(username="first", email="racer@example.org")
    for module in (registration, services):  # as if both checks ran before either insert
        monkeypatch.setattr(module, "email_taken", lambda _email: False)
    caplog.set_level(logging.DEBUG, logger="bastion")
    from tests.support.auth import csrf_token

    resp = client.post(
        "/auth/register",
        data={
            "username": "second",
            "email": "racer@example.org",
            "password": "a long enough passphrase 7",
            "confirm": "a long enough passphrase 7",
            "csrf_token": csrf_token(client, "/auth/register"),
        },
    )
    assert resp.status_code == 500
    text = "\n".join(JSONFormatter().format(r) for r in caplog.records)
    assert "INSERT INTO users" in text  # the failure itself is logged...
    assert "racer@example.org" not in text and "$argon2" not in text  # ...not its values
    # PostgreSQL quotes the taken key itself ("DETAIL: Key (email)=(...)"); Sentry's copy of
    # the message must not carry it either.
    from bastion.observability.sentry import scrub

    failure = next(r for r in caplog.records if r.exc_info)
    message = str(failure.exc_info[1])  # type: ignore[index]
    assert "racer" not in scrub({"value": message.replace("@example.org", "")})["value"]


@pytest.mark.asvs("V16.2.5")
def test_counts_and_ids_named_after_secrets_stay_readable_secrets_do_not() -> None:
    """Which token an audit line is about is evidence, not a secret; the token is one."""
    record = logging.LogRecord("bastion.audit", logging.INFO, "", 0, "audit", None, None)
    record.details = {  # type: ignore[attr-defined]
        "token_id": 42, "tokens_revoked": 3, "otp_required": True,
        "token": "bst_live", "code": 123456, "token_id_hint": "bst_x",
        "reset_token_id": "a-string-is-redacted-whatever-its-name",
    }
    out = json.loads(JSONFormatter().format(record))["details"]
    assert (out["token_id"], out["tokens_revoked"], out["otp_required"]) == (42, 3, True)
    for name in ("token", "code", "token_id_hint", "reset_token_id"):
        assert out[name] == "**********", name


def test_the_reseal_line_shows_its_counts_of_recovery_codes(
    runner: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # Named after "codes", two of the counts an operator reads after a key rotation were
    # "**********" in the log, while the audit row beside them kept the numbers.
    with caplog.at_level(logging.INFO, logger="bastion.audit"):
        result = runner.invoke(args=["secret-key", "reseal"])
    assert result.exit_code == 0, result.output
    (record,) = [r for r in caplog.records if getattr(r, "event", "") == "cli.totp_secrets_resealed"]
    details = json.loads(JSONFormatter().format(record))["details"]
    assert {k: v for k, v in details.items() if k.startswith("recovery_codes_")} == {
        "recovery_codes_under_fallbacks": 0, "recovery_codes_unrecorded": 0,
        "recovery_codes_retired": 0,
    }


LOG_HANDLERS = re.compile(
    r"\b(FileHandler|RotatingFileHandler|TimedRotatingFileHandler|WatchedFileHandler|"
    r"SysLogHandler|SMTPHandler|HTTPHandler|SocketHandler|DatagramHandler|QueueHandler|"
    r"NTEventLogHandler|MemoryHandler)\b"
)


@pytest.mark.asvs("V16.2.3")
def test_app_and_server_logs_go_only_to_the_inventoried_stream(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The inventory says stderr (and Sentry, tested in tests/ops/test_sentry.py): a line
    logged by a non-testing app reaches stderr and nothing else, and no other handler
    (file, syslog, network) exists in the code or the server's configuration."""
    from pathlib import Path

    from flask import Flask

    from bastion.observability.logging import configure_logging

    root = Path(__file__).resolve().parents[2]
    bastion_logger = logging.getLogger("bastion")
    saved = (bastion_logger.handlers[:], bastion_logger.propagate, bastion_logger.level)
    bare = Flask("log-destinations")
    try:
        configure_logging(bare)
        handlers = bastion_logger.handlers + bare.logger.handlers
        assert handlers
        assert all(type(h) is logging.StreamHandler and h.stream is sys.stderr for h in handlers)
        assert not bastion_logger.propagate and not bare.logger.propagate
        logging.getLogger("bastion.destinations").warning("where does this line go")
        out, err = capsys.readouterr()
    finally:
        bastion_logger.handlers[:], bastion_logger.propagate = saved[0], saved[1]
        bastion_logger.setLevel(saved[2])
    assert out == ""
    assert json.loads(err.strip().splitlines()[-1])["msg"] == "where does this line go"
    for path in [*(root / "bastion").rglob("*.py"), root / "gunicorn.conf.py"]:
        assert not LOG_HANDLERS.search(path.read_text(encoding="utf-8")), path
    server = (root / "gunicorn.conf.py").read_text(encoding="utf-8")
    assert re.search(r'^errorlog = "-"$', server, re.M) and re.search(r"^accesslog = None$", server, re.M)
    inventory = (root / "docs" / "security.md").read_text(encoding="utf-8")
    for layer in ("| app request log |", "| gunicorn |"):
        row = next(line for line in inventory.splitlines() if line.startswith(layer))
        assert "| stderr" in row, layer
