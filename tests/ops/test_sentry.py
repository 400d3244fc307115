"""Sentry: real envelopes sent to a local HTTP endpoint carry no personal data or secrets."""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import sentry_sdk
from flask import Flask

from bastion.extensions import csrf
from bastion.observability.sentry import FILTERED, scrub_event
from bastion.security.access import public

PASSWORD = "hunter2-correct-horse-battery"
COOKIE = "cookie-value-that-must-stay-home"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0MiJ9.c2lnbmF0dXJlLXNlY3JldA"
PAT = "bst_Zm9vYmFyYmF6cXV4cXV1eGNvcmdl"
EMAIL = "alice.private@example.org"
RESET_TOKEN = "Q2hhbmdlLW1lLXRoaXMtaXMtYS1yZXNldC10b2tlbg"
SECRETS = (PASSWORD, COOKIE, JWT, PAT, EMAIL, RESET_TOKEN, "alice.private")


class Collector(BaseHTTPRequestHandler):
    """Stands in for sentry.io: keeps every envelope it receives."""

    received: list[bytes] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        type(self).received.append(body)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture
def collector() -> Iterator[ThreadingHTTPServer]:
    Collector.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def sentry_app(make_app: Callable[..., Flask], collector: ThreadingHTTPServer) -> Iterator[Flask]:
    port = collector.server_address[1]
    app = make_app(SENTRY_DSN=f"http://public@127.0.0.1:{port}/1", RELEASE="bastion@test-1")

    @public
    def explode(token: str) -> str:
        raise RuntimeError(f"could not reach {EMAIL} with {PAT} for {token}")

    app.add_url_rule("/boom/<token>", "boom", csrf.exempt(explode), methods=["POST"])
    yield app
    sentry_sdk.get_client().close(timeout=2)
    sentry_sdk.init(dsn="")  # an inactive client for the rest of the run


def _events(raw: list[bytes]) -> list[dict[str, Any]]:
    events = []
    for envelope in raw:
        lines = envelope.split(b"\n")
        for header, payload in zip(lines[1::2], lines[2::2], strict=False):
            if json.loads(header).get("type") == "event":
                events.append(json.loads(payload))
    return events


@pytest.mark.asvs("V14.2.3", "V16.2.3", "V16.2.5", "V16.3.4", "V16.5.1")
def test_exception_reaches_sentry_without_personal_data(sentry_app: Flask) -> None:
    client = sentry_app.test_client()
    client.set_cookie("__Host-session", COOKIE, domain="localhost")
    resp = client.post(
        f"/boom/{RESET_TOKEN}?token={PAT}&email={EMAIL}",
        data={"username": "alice", "password": PASSWORD, "email": EMAIL, "note": f"mail {EMAIL}"},
        headers={
            "Authorization": f"Bearer {JWT}",
            "X-Api-Key": PAT,
            "Cookie": f"__Host-session={COOKIE}",
        },
    )
    assert resp.status_code == 500
    assert PASSWORD not in resp.get_data(as_text=True)
    sentry_sdk.flush(timeout=5)

    raw = b"\n".join(Collector.received)
    events = _events(Collector.received)
    assert events, "no event reached the collector"
    event = events[0]
    assert event["exception"]["values"][-1]["type"] == "RuntimeError"
    assert event["release"] == "bastion@test-1"
    assert event["environment"] == "testing"
    text = raw.decode()
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} leaked to Sentry"
    assert FILTERED in json.dumps(event["exception"])
    assert not sentry_sdk.get_client().should_send_default_pii()
    request = event.get("request", {})
    for field in ("cookies", "data", "query_string"):
        assert field not in request


@pytest.mark.asvs("V14.2.3")
def test_scrub_event_removes_secrets_wherever_they_are() -> None:
    event = {
        "request": {
            "url": f"https://bastion.example.org/auth/reset/{RESET_TOKEN}",
            "headers": [
                ["X-Forwarded-For", "192.0.2.77"],
                ["Authorization", f"Bearer {JWT}"],
                ["Cookie", COOKIE],
                ["Accept", "text/html"],
            ],
            "cookies": {"__Host-session": COOKIE},
            "data": {"password": PASSWORD},
        },
        "breadcrumbs": {
            "values": [
                {
                    "message": f"login failed for {EMAIL}",
                    "data": {"otp_code": "123456", "ip": "198.51.100.4"},
                }
            ]
        },
        "extra": {"api_key": "k", "new_password": PASSWORD, "note": f"token {PAT} and {JWT}"},
        "user": {"email": EMAIL, "ip_address": "203.0.113.9"},
    }
    cleaned = scrub_event(event)
    text = json.dumps(cleaned)
    for secret in (*SECRETS, "123456", "203.0.113.9", "198.51.100.4", "192.0.2.77"):
        assert secret not in text
    assert ["Accept", "text/html"] in cleaned["request"]["headers"]
    assert cleaned["request"]["url"].startswith("https://bastion.example.org/auth/reset/")


# Headers in which a CDN, a load balancer or a proxy names the client's address. Only
# X-Forwarded-For and X-Real-IP were filtered (by sentry-sdk and by ADDRESS_KEYS); behind
# Cloudflare, Akamai, Fastly, Envoy or ingress-nginx every event carried the visitor's address.
CLIENT_ADDRESS_HEADERS = {
    "Forwarded": "for=198.51.100.21;proto=https",
    "CF-Connecting-IP": "198.51.100.22",
    "CF-Connecting-IPv6": "2001:db8::23",
    "True-Client-IP": "198.51.100.24",
    "X-Client-IP": "198.51.100.25",
    "Fastly-Client-IP": "198.51.100.26",
    "X-Cluster-Client-IP": "198.51.100.27",
    "X-Original-Forwarded-For": "198.51.100.28",
    "X-Envoy-External-Address": "198.51.100.29",
}


@pytest.mark.asvs("V14.2.3", "V16.2.5")
def test_client_addresses_in_proxy_headers_never_reach_sentry(sentry_app: Flask) -> None:
    client = sentry_app.test_client()
    resp = client.post(f"/boom/{RESET_TOKEN}", headers=CLIENT_ADDRESS_HEADERS)
    assert resp.status_code == 500
    sentry_sdk.flush(timeout=5)

    events = _events(Collector.received)
    assert events, "no event reached the collector"
    text = b"\n".join(Collector.received).decode()
    for name, value in CLIENT_ADDRESS_HEADERS.items():
        address = value.removeprefix("for=").split(";")[0]
        assert address not in text, f"{name} leaked the client address to Sentry"
    headers = {k.lower(): v for k, v in events[0]["request"]["headers"].items()}
    assert headers["cf-connecting-ip"] == FILTERED  # the header stays, its value does not
