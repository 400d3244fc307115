"""429s are counted, audited, and sampled so a flood cannot flood the audit table."""

from __future__ import annotations

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
