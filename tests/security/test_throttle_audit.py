"""429s are counted, audited, and sampled so a flood cannot flood the audit table."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from flask import Flask

from bastion.extensions import db
from bastion.models import AuditEvent
from bastion.observability import counters


@pytest.mark.asvs("V2.4.1", "V16.3.3")
def test_rate_limit_breaches_are_counted_and_sampled(app: Flask) -> None:
    seen: list[str] = []

    def sink(name: str, labels: dict[str, str]) -> None:
        seen.append(name)

    counters.add_sink(sink)
    report = b'{"csp-report": {"violated-directive": "img-src"}}'
    try:
        client = app.test_client()
        # The CSP report collector allows 60 a minute and costs little per request.
        statuses = [
            client.post(
                "/csp-report", data=report, content_type="application/csp-report"
            ).status_code
            for _ in range(65)
        ]
    finally:
        counters._sinks.remove(sink)
    assert statuses.count(429) == 5
    assert seen.count("rate_limited") == 5
    rows = list(
        db.session.scalars(db.select(AuditEvent).where(AuditEvent.event == "ratelimit.hit"))
    )
    assert len(rows) == 1
    assert rows[0].details["endpoint"] == "main.csp_report"
    assert rows[0].ip == "127.0.0.1"


@pytest.mark.asvs("V16.3.3", "V16.2.5", "V14.2.1")
def test_csp_reports_are_logged_but_sampled_into_the_audit_trail(app: Flask) -> None:
    """The endpoint is anonymous and the audit table append-only: 60 requests a minute of 20
    reports each wrote 1200 undeletable rows. Every report is still logged and counted."""
    seen: list[str] = []
    counters.add_sink(lambda name, labels: seen.append(name))
    reset = "https://localhost/auth/reset/eyJ1aWQiOjF9.LiveResetSecret?x=1"
    batch = [{"type": "csp-violation", "body": {"documentURL": reset,
                                                 "blockedURL": "inline",
                                                 "effectiveDirective": "script-src-elem"}}] * 20
    try:
        client = app.test_client()
        for _ in range(5):
            resp = client.post("/csp-report", json=batch,
                               headers={"Content-Type": "application/reports+json"})
            assert resp.status_code == 204
    finally:
        counters._sinks.pop()
    assert seen.count("csp_reports") == 100
    rows = list(db.session.scalars(db.select(AuditEvent).where(AuditEvent.event == "csp.report")))
    assert len(rows) == 1 and rows[0].details["reports"] == 20
    # Scheme, host and path only, and a reset link's secret never stored.
    assert rows[0].details["documentURL"] == "https://localhost/auth/reset/[redacted]"
    assert rows[0].details["blockedURL"] == "inline"


@pytest.mark.asvs("V16.3.3", "V2.4.1")
def test_breaches_from_one_ipv6_network_are_audited_as_one_client(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once a /64 has used up its (shared) limit, every request from any of its 2**64
    addresses is a breach: sampled by full address, each wrote an undeletable row. They are
    sampled as the client the limits count, and all clients together are capped."""
    from limits import RateLimitItemPerMinute

    from bastion.security import throttle_audit

    monkeypatch.setattr(throttle_audit, "AUDIT_ROWS_PER_MINUTE", RateLimitItemPerMinute(2))
    report = b'{"csp-report": {"violated-directive": "img-src"}}'
    client = app.test_client()

    def post(address: str) -> int:
        return client.post("/csp-report", data=report, content_type="application/csp-report",
                           environ_base={"REMOTE_ADDR": address}).status_code

    statuses = [post(f"2001:db8:0:1::{host:x}") for host in range(1, 71)]
    assert statuses.count(429) == 10  # the /64 shares one 60-a-minute bucket
    breaches = db.select(AuditEvent).where(AuditEvent.event == "ratelimit.hit")
    assert len(list(db.session.scalars(breaches))) == 1
    for net in range(2, 6):  # other networks breach too, up to the shared cap
        assert [post(f"2001:db8:0:{net:x}::1") for _ in range(61)][-1] == 429
    assert len(list(db.session.scalars(breaches))) == 2


@pytest.mark.redis
@pytest.mark.asvs("V16.3.3")
def test_two_sites_sharing_one_redis_sample_their_own_clients(
    make_app: Callable[..., Flask], redis_url: str
) -> None:
    """The sampling counts live under the deployment's key prefix, as its other counts: a
    client breaching a limit on staging must not cost production its audit row."""
    from bastion.security.throttle_audit import first_this_minute

    prefix = os.environ["BASTION_TEST_REDIS_PREFIX"]
    sites = [make_app(REDIS_URL=redis_url, RATELIMIT_KEY_PREFIX=f"{prefix}-{name}")
             for name in ("staging", "production")]
    answers = []
    for site in sites:
        with site.app_context():
            answers += [first_this_minute("bastion-breach-audit", "203.0.113.5") for _ in "ab"]
    assert answers == [True, False, True, False]
