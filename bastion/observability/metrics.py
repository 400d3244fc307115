"""Prometheus metrics: request count and latency per endpoint, plus security counters.

Under gunicorn every worker is a separate process, so ``prometheus_client`` runs in its
multiprocess mode when ``PROMETHEUS_MULTIPROC_DIR`` is set (``gunicorn.conf.py`` empties the
directory at start): each worker writes its values to memory-mapped files and ``/metrics``
sums them, whichever worker answers the scrape. Without the variable the default registry
of this process is used (development server, tests).

Labels are bounded on purpose: the Flask endpoint name (never the raw path, which an
attacker could vary forever), the method from a fixed list and the status code. Nothing
about a user ever becomes a label.
"""

from __future__ import annotations

import hmac
import os
import re
import time
from typing import Any

from flask import Blueprint, Flask, Response, abort, current_app, g, request
from flask.typing import ResponseReturnValue
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from bastion.observability import counters
from bastion.security.access import public

bp = Blueprint("metrics", __name__)

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# A 429 from these endpoints (web form, 2FA step, re-authentication, API sign-in and token
# creation) is counted here as login throttling, whether the route limit or the sign-in
# throttle answered; a lockout answered some other way increments "login_throttled" where
# it happens.
LOGIN_ENDPOINTS = frozenset(
    {"auth.login", "auth.two_factor", "auth.reauth", "api.issue_token", "api.create_token"}
)
_REASON_RE = re.compile(r"[^a-z0-9_]")

# "*_created" series are absent in multiprocess mode anyway; dropping them everywhere keeps
# one process and many exporting the same families.
disable_created_metrics()  # type: ignore[no-untyped-call]

REQUESTS = Counter(
    "bastion_http_requests",
    "HTTP requests answered, by Flask endpoint, method and status.",
    ("endpoint", "method", "status"),
)
LATENCY = Histogram(
    "bastion_http_request_duration_seconds",
    "Time from the start of the request to the response, by Flask endpoint and method.",
    ("endpoint", "method"),
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
# The series each request adds to, by their label values. ``labels()`` hands out the same
# child for the same values every time, after checking and converting them under a lock
# (about fifteen calls a request); nothing here ever removes a series. Bounded: endpoints
# are the app's routes (or "unmatched"), methods the few above, statuses the app's own.
_REQUEST_SERIES: dict[tuple[str, str, int], Any] = {}
_LATENCY_SERIES: dict[tuple[str, str], Any] = {}
SECURITY: dict[str, Counter] = {
    "login_failures": Counter("bastion_login_failures", "Failed sign-in attempts."),
    "login_throttled": Counter(
        "bastion_login_throttled", "Sign-in attempts refused by a rate limit or lockout."
    ),
    "2fa_failures": Counter("bastion_2fa_failures", "Wrong or replayed second-factor codes."),
    "rate_limited": Counter("bastion_rate_limited", "Requests answered 429 by any rate limit."),
    "csrf_failures": Counter("bastion_csrf_failures", "Requests refused for a bad CSRF token."),
    "csp_reports": Counter("bastion_csp_reports", "Content-Security-Policy violation reports."),
    "upload_rejections": Counter(
        "bastion_upload_rejections", "Uploads refused, by reason.", ("reason",)
    ),
    "token_reuse_detected": Counter(
        "bastion_token_reuse_detected", "Reuse of a rotated refresh token (family revoked)."
    ),
}


def _record_security_event(name: str, labels: dict[str, str]) -> None:
    """Sink for ``counters.increment``: the only way security events reach Prometheus."""
    metric = SECURITY[name]
    if name == "upload_rejections":
        # Reasons come from code, but keep them short and plain so the series stay few.
        reason = _REASON_RE.sub("_", str(labels.get("reason", "other")).lower())[:32] or "other"
        metric.labels(reason=reason).inc()
    else:
        metric.inc()


def init_metrics(app: Flask) -> None:
    """Time every request, export the security counters and serve ``/metrics``."""
    counters.add_sink(_record_security_event)
    app.before_request(_start_timer)
    app.after_request(_observe)
    app.register_blueprint(bp)


def _start_timer() -> None:
    g.metrics_started = time.perf_counter()


def _observe(response: Response) -> Response:
    # The request looked up once: each use of a context proxy costs about 2 us.
    req = request._get_current_object()  # type: ignore[attr-defined]
    endpoint = req.endpoint or "unmatched"
    method = req.method if req.method in METHODS else "OTHER"
    status = response.status_code
    counted = _REQUEST_SERIES.get((endpoint, method, status))
    if counted is None:
        counted = _REQUEST_SERIES[endpoint, method, status] = REQUESTS.labels(
            endpoint=endpoint, method=method, status=str(status)
        )
    counted.inc()
    started = g.get("metrics_started")
    if started is not None:
        timed = _LATENCY_SERIES.get((endpoint, method))
        if timed is None:
            timed = _LATENCY_SERIES[endpoint, method] = LATENCY.labels(
                endpoint=endpoint, method=method
            )
        timed.observe(time.perf_counter() - started)
    # Limiter breaches are counted as "rate_limited" by the breach callback
    # (bastion.security.throttle_audit), once each; counting 429s here too doubled them.
    if status == 429 and endpoint in LOGIN_ENDPOINTS:
        counters.increment("login_throttled")
    return response


def _registry() -> CollectorRegistry:
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return REGISTRY
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    return registry


def _token_matches(expected: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        return False
    # Constant time, so the token cannot be guessed byte by byte from response times.
    return hmac.compare_digest(given.strip().encode(), expected.encode())


@bp.get("/metrics")
@public  # guarded by its own bearer token below, not by a user session
def export() -> ResponseReturnValue:
    """Prometheus text format; only for a scraper holding ``BASTION_METRICS_TOKEN``."""
    expected = current_app.config.get("METRICS_TOKEN")
    if not expected:
        # No token configured means metrics are switched off: answering 404 (not 401)
        # does not even advertise an endpoint that no one can use.
        abort(404)
    if not _token_matches(str(expected)):
        from bastion.errors import problem

        return problem(
            401,
            "Send the metrics token as 'Authorization: Bearer <token>'.",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    resp = Response(generate_latest(_registry()), mimetype=CONTENT_TYPE_LATEST)
    resp.headers["Cache-Control"] = "no-store"
    return resp
