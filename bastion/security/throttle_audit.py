"""Record rate-limit breaches (429s) for the audit trail and the security dashboard.

A client hammering a limit must not turn every refused request into a database write, so
at most one ``ratelimit.hit`` row per client address per minute is stored. The sampling
uses the limiter's own storage (Redis in production), so it holds across instances.
"""

from __future__ import annotations

import logging

from flask import Flask, request
from flask_limiter import RequestLimit
from limits import RateLimitItemPerMinute

from bastion.extensions import limiter

log = logging.getLogger("bastion.ratelimit")
ONE_PER_MINUTE = RateLimitItemPerMinute(1)
# Login throttling (a 429 from a sign-in endpoint, whether this limiter or the account
# throttle answered) is counted once by the metrics hook, not here.


def record_breach(request_limit: RequestLimit) -> None:
    """Flask-Limiter ``on_breach`` callback: count every breach (the one place 429s from
    rate limits are counted), audit a sample."""
    from bastion.observability import counters
    from bastion.security import audit

    counters.increment("rate_limited")
    ip = request.remote_addr or "unknown"
    if not limiter.limiter.hit(ONE_PER_MINUTE, "bastion-breach-audit", ip):
        return
    audit.record(
        "ratelimit.hit",
        details={
            "endpoint": (request.endpoint or "")[:100],
            "method": request.method,
            "limit": str(request_limit.limit)[:60],
        },
    )


def init_throttle_audit(app: Flask) -> None:
    """Call before ``limiter.init_app``: the limiter reads the callback from the config."""
    app.config.setdefault("RATELIMIT_ON_BREACH_CALLBACK", record_breach)
