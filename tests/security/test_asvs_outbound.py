"""Outbound connections: no redirects followed, no credentials over clear text (V15.3.2, V12.3.1)."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask


class _Hits:
    def __init__(self) -> None:
        self.ingest: list[str] = []
        self.elsewhere: list[str] = []


def _server(handler: type[http.server.BaseHTTPRequestHandler]) -> http.server.ThreadingHTTPServer:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def redirecting_pair() -> Iterator[tuple[str, _Hits]]:
    """An endpoint that answers every request with a 307 to a second, recording server."""
    hits = _Hits()

    class Elsewhere(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.elsewhere.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        do_POST = do_GET  # noqa: N815

        def log_message(self, *args: Any) -> None:
            return

    other = _server(Elsewhere)

    class Ingest(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            hits.ingest.append(self.path)
            self.send_response(307)
            self.send_header("Location", f"http://127.0.0.1:{other.server_port}/stolen")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return

    first = _server(Ingest)
    yield f"127.0.0.1:{first.server_port}", hits
    for s in (first, other):
        s.shutdown()
        s.server_close()


@pytest.mark.asvs("V15.3.2")
def test_sentry_transport_does_not_follow_redirects(
    make_app: Callable[..., Flask], redirecting_pair: tuple[str, _Hits]
) -> None:
    import sentry_sdk

    where, hits = redirecting_pair
    make_app(SENTRY_DSN=f"http://public@{where}/1")
    try:
        sentry_sdk.capture_message("an event that must not travel on")
        sentry_sdk.flush(timeout=5)
    finally:
        sentry_sdk.get_client().close(timeout=2)
        sentry_sdk.init(dsn="")
    assert hits.ingest, "the event never reached the configured host"
    assert hits.elsewhere == []


@pytest.mark.asvs("V15.3.2")
def test_dependency_audit_does_not_follow_redirects(redirecting_pair: tuple[str, _Hits]) -> None:
    from flask_deploy_check.deps import DepsOptions, audit_installed

    where, hits = redirecting_pair
    outcome = audit_installed(DepsOptions(vuln_url=f"http://{where}/v1/query", timeout=5))
    assert hits.ingest
    assert hits.elsewhere == []
    assert outcome.error  # a redirect is a failed audit, never a clean one


@pytest.mark.asvs("V15.3.2")
def test_container_healthcheck_does_not_follow_redirects() -> None:
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "deploy" / "healthcheck.py"
    spec = importlib.util.spec_from_file_location("bastion_healthcheck", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module._NoRedirect().redirect_request() is None


@pytest.mark.asvs("V12.3.1")
def test_mail_credentials_never_cross_the_network_in_clear_text(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    """A remote SMTP server without STARTTLS gets neither the login nor the message."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    seen: dict[str, list[Any]] = {"auth": [], "data": []}

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
            seen["data"].append(envelope.content)
            return "250 OK"

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        seen["auth"].append(mechanism)
        return AuthResult(success=True)

    # 127.0.0.2 is a loopback address, but not one of the names the mailer treats as local,
    # so it stands in for a remote relay that offers no TLS.
    with socket.socket() as probe:
        probe.bind(("127.0.0.2", 0))
        port = probe.getsockname()[1]
    controller = Controller(Handler(), hostname="127.0.0.2", port=port,
                            authenticator=authenticator, auth_require_tls=False)
    controller.start()
    try:
        app = make_app(MAIL_URL=f"smtp://relay-user:relay-pass@127.0.0.2:{port}",
                       MAIL_BACKGROUND=False)
        from bastion.mail import send_mail

        with app.test_request_context():
            send_mail("someone@example.org", "Hello", "password_changed",
                      user=None, reset_url="https://localhost/auth/reset")
    finally:
        controller.stop()
    assert seen == {"auth": [], "data": []}
    assert any("mail not sent" in r.getMessage() for r in caplog.records)
