"""Record rate-limit breaches (429s) for the audit trail and the security dashboard.

A client hammering a limit must not turn every refused request into a database write, so
at most one ``ratelimit.hit`` row per client per minute is stored (a client as the rate
limits count it: an IPv6 /64, whose 2**64 addresses would otherwise each write a row), and
at most ``AUDIT_ROWS_PER_MINUTE`` for all clients together. The sampling uses the limiter's
own storage (Redis in production), so it holds across instances. Every breach is still
counted (``rate_limited``).
"""

from __future__ import annotations

import logging

from flask import Flask, current_app, request
from flask_limiter import RequestLimit
from limits import RateLimitItemPerMinute

from bastion.extensions import limiter
from bastion.security.ratelimit_keys import client_key

log = logging.getLogger("bastion.ratelimit")
ONE_PER_MINUTE = RateLimitItemPerMinute(1)
# Sampled rows per scope and minute from all clients together (a /48 holds 65,536 /64s).
AUDIT_ROWS_PER_MINUTE = RateLimitItemPerMinute(30)
# Login throttling (a 429 from a sign-in endpoint, whether this limiter or the account
# throttle answered) is counted once by the metrics hook, not here.


def record_breach(request_limit: RequestLimit) -> None:
    """Flask-Limiter ``on_breach`` callback: count every breach (the one place 429s from
    rate limits are counted), audit a sample."""
    from bastion.observability import counters
    from bastion.security import audit

    counters.increment("rate_limited")
    if not first_this_minute("bastion-breach-audit", request.remote_addr or "unknown"):
        return
    audit.record(
        "ratelimit.hit",
        details={
            "endpoint": (request.endpoint or "")[:100],
            "method": request.method,
            "limit": str(request_limit.limit)[:60],
        },
    )


def first_this_minute(scope: str, address: str) -> bool:
    """Whether an anonymous event from ``address`` may write its audit row in ``scope``:
    once a minute per client, and ``AUDIT_ROWS_PER_MINUTE`` times for everyone.

    False while the limiter's store cannot be reached: the callers still log and count
    the event, and a refusal must not become a 500 because its sample could not be drawn.
    """
    if not limiter.enabled:
        return True
    strategy = limiter.limiter
    # Under the deployment's own prefix, as its other counts: two sites sharing a Redis
    # would otherwise sample each other's clients.
    prefix = str(current_app.config["RATELIMIT_KEY_PREFIX"])
    try:
        return bool(strategy.hit(ONE_PER_MINUTE, prefix, scope, client_key(address))) and bool(
            strategy.hit(AUDIT_ROWS_PER_MINUTE, prefix, f"{scope}-all")
        )
    except Exception:  # any storage failure (redis-py, limits): sample nothing
        log.warning("audit sampling store unavailable", extra={"scope": scope})
        return False


def init_throttle_audit(app: Flask) -> None:
    """Call before ``limiter.init_app``: the limiter reads the callback from the config."""
    app.config.setdefault("RATELIMIT_ON_BREACH_CALLBACK", record_breach)
