"""What the site does while PostgreSQL or Redis is unreachable.

PostgreSQL: any request that needs the database gets a quick 503 with ``Retry-After`` (an
HTML page, or problem+json under ``/api/``) instead of a 500 or a hang. Connection and
statement timeouts bound the wait (``config._engine_options``); ``pool_pre_ping`` throws away
dead pooled connections, so the site recovers by itself when the database is back.

Redis (rate-limit storage): reads fail OPEN, credential endpoints fail CLOSED. Whatever
needs Redis itself to answer (an API token's revocation check) gets the same quick 503.
Flask-Limiter falls back to per-process in-memory limits
(``RATELIMIT_IN_MEMORY_FALLBACK_ENABLED``) and logs a warning, so pages keep being served
with limits that still hold per instance. A login, 2FA, re-authentication, registration,
password-reset or API-token request, though, must not be guessable at N times the
intended rate just because Redis is down and N instances each count alone: those requests
(``RATELIMIT_FAIL_CLOSED_PATHS``) answer 503 until the shared store is reachable again.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, current_app, request
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import ServiceUnavailable

from bastion.observability.redaction import request_path

log = logging.getLogger("bastion.outages")

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
DATABASE_RETRY_AFTER = 5
LIMITER_RETRY_AFTER = 30


def init_outage_handling(app: Flask) -> None:
    for exc_class in (OperationalError, InterfaceError, PoolTimeoutError):
        app.register_error_handler(exc_class, database_unavailable)
    for redis_error in (RedisConnectionError, RedisTimeoutError):
        app.register_error_handler(redis_error, redis_unavailable)
    paths = app.config.get("RATELIMIT_FAIL_CLOSED_PATHS") or ()
    if isinstance(paths, str):
        paths = [p.strip() for p in paths.split(",") if p.strip()]
    app.config["RATELIMIT_FAIL_CLOSED_PATHS"] = tuple(paths)
    app.before_request(refuse_credentials_without_limiter)
    # Flask-Limiter reports a dead store ("falling back to in-memory storage") only to its
    # own logger, which has no handler; send it to the JSON log operators already read.
    ours = logging.getLogger("bastion")
    theirs = logging.getLogger("flask-limiter")
    theirs.handlers[:] = [*ours.handlers, logging.NullHandler()]
    theirs.propagate = ours.propagate


def database_unavailable(exc: Exception) -> Response:
    """503 for a database that cannot be reached; the details stay in the log."""
    log.warning("database unavailable", extra={"error": type(exc).__name__, "path": request_path()})
    from bastion.errors import handle_http_exception
    from bastion.extensions import db

    try:
        db.session.rollback()
    except Exception:  # the connection is already gone
        log.debug("rollback after database outage failed", exc_info=True)
    return handle_http_exception(
        ServiceUnavailable(
            description="The database is temporarily unavailable. Please try again shortly.",
            retry_after=DATABASE_RETRY_AFTER,
        )
    )


def redis_unavailable(exc: Exception) -> Response:
    """503 for a Redis that cannot be reached where no answer is safe without it: a token
    whose revocation cannot be read is refused (closed), but not with a 500."""
    log.warning("redis unavailable", extra={"error": type(exc).__name__, "path": request_path()})
    from bastion.errors import handle_http_exception

    return handle_http_exception(
        ServiceUnavailable(
            description="A service is temporarily unavailable. Please try again shortly.",
            retry_after=LIMITER_RETRY_AFTER,
        )
    )


def refuse_credentials_without_limiter() -> None:
    """before_request: credential checks need the shared rate-limit store (fail closed)."""
    cfg = current_app.config
    if request.method in SAFE_METHODS or not cfg.get("REDIS_URL") or not cfg["RATELIMIT_ENABLED"]:
        return
    if not request.path.startswith(cfg["RATELIMIT_FAIL_CLOSED_PATHS"]):
        return
    from bastion.extensions import limiter

    try:
        reachable = bool(limiter.storage.check())
    except Exception:  # any storage error means "cannot count attempts"
        reachable = False
    if reachable:
        if limiter.limiter.storage is not limiter.storage:
            # Flask-Limiter is still on its per-process fallback: it looks at the store
            # again only every 1-32 s, and until then this attempt would be counted by this
            # worker alone. The store answered just now, so count there again.
            limiter._storage_dead = False
        return
    log.warning(
        "rate-limit store unreachable: refusing credential request", extra={"path": request_path()}
    )
    raise ServiceUnavailable(
        description=(
            "Signing in is paused for a moment while a service recovers. Please try again shortly."
        ),
        retry_after=LIMITER_RETRY_AFTER,
    )
