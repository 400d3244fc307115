"""X-Forwarded-* is believed only from the configured number of proxies."""

from __future__ import annotations

import pytest


def _seen_ip(app) -> str:  # type: ignore[no-untyped-def]
    client = app.test_client()
    client.post(
        "/csp-report",
        json={"csp-report": {"violated-directive": "script-src"}},
        headers={"X-Forwarded-For": "203.0.113.9, 198.51.100.7"},
        environ_base={"REMOTE_ADDR": "10.0.0.5"},
    )
    from bastion.extensions import db
    from bastion.models import AuditEvent

    with app.app_context():
        return db.session.query(AuditEvent.ip).order_by(AuditEvent.id.desc()).first()[0]


@pytest.mark.asvs("V4.1.3", "V16.2.1", "V15.3.4")
def test_spoofed_forwarded_for_is_ignored_without_proxy_hops(make_app) -> None:  # type: ignore[no-untyped-def]
    assert _seen_ip(make_app(PROXY_HOPS=0)) == "10.0.0.5"


@pytest.mark.asvs("V4.1.3", "V15.3.4")
def test_one_trusted_hop_takes_only_the_last_address(make_app) -> None:  # type: ignore[no-untyped-def]
    # The proxy appended the address it saw (198.51.100.7); what the client wrote before
    # it (203.0.113.9) is not trusted.
    assert _seen_ip(make_app(PROXY_HOPS=1)) == "198.51.100.7"


@pytest.mark.asvs("V15.3.4", "V2.4.1")
def test_rate_limit_buckets_follow_the_real_client(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app(PROXY_HOPS=0)
    client = app.test_client()
    statuses = []
    for i in range(65):
        resp = client.post(
            "/csp-report",
            json={"csp-report": {}},
            headers={"X-Forwarded-For": f"192.0.2.{i}"},
        )
        statuses.append(resp.status_code)
    # Rotating a forged header does not give a fresh bucket.
    assert statuses[-1] == 429
    assert int(resp.headers["Retry-After"]) >= 1
