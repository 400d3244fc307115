"""Rate-limit headers on 429 answers, without a Redis read on every request.

Flask-Limiter's own headers read the window back from storage after every hit: a second
Redis round trip on every request, as costly as the count itself. Its headers are off
(``RATELIMIT_HEADERS_ENABLED = False``) and this hook adds the same ones where a client
must act on them: every 429, pages and API alike, with ``Retry-After`` (RFC 6585), which
is what well-behaved API clients back off on. Counting is untouched: every request is
still hit against its limits before the view runs.
"""

from __future__ import annotations

import logging
import time

from flask import Flask, Response
from flask_limiter import RequestLimit

from bastion.extensions import limiter

log = logging.getLogger(__name__)


def init_ratelimit_headers(app: Flask) -> None:
    app.after_request(add_ratelimit_headers)


def add_ratelimit_headers(response: Response) -> Response:
    throttled = response.status_code == 429
    if not throttled:
        return response
    if "X-RateLimit-Limit" in response.headers:  # Flask-Limiter's own headers are on
        return response
    current = limiter.current_limit
    if current is None:
        return response
    write_headers(response, current)
    return response


def write_headers(response: Response, limit: RequestLimit) -> None:
    """``X-RateLimit-*`` and ``Retry-After`` of a breached ``limit`` on its 429; shared by
    Flask-Limiter's refusals (above) and the app's own per-account budgets
    (``bastion.content.write_limits``)."""
    try:
        reset_at = limit.reset_at
        response.headers["X-RateLimit-Limit"] = str(limit.limit.amount)
        response.headers["X-RateLimit-Remaining"] = str(limit.remaining)
        response.headers["X-RateLimit-Reset"] = str(reset_at)
        # A 429 of the app's own (say, a login delay) keeps its own wait. Otherwise reset_at
        # is a whole second rounded up: never promise more than one window.
        if "Retry-After" not in response.headers:
            wait = min(limit.limit.get_expiry(), reset_at - int(time.time()))
            response.headers["Retry-After"] = str(max(1, wait))
    except Exception:
        log.exception("could not read the rate-limit window")
        if "Retry-After" not in response.headers:
            response.headers["Retry-After"] = str(limit.limit.get_expiry())
