"""Liveness and readiness probes."""

from __future__ import annotations

import logging

from flask import Blueprint, current_app
from flask.typing import ResponseReturnValue
from sqlalchemy import text

from bastion.extensions import db, limiter
from bastion.security.access import public

bp = Blueprint("health", __name__)
log = logging.getLogger("bastion.health")


@bp.get("/healthz")
@public
@limiter.exempt
def healthz() -> ResponseReturnValue:
    """The process answers; says nothing about its dependencies."""
    return {"status": "ok"}


@bp.get("/readyz")
@public
@limiter.exempt
def readyz() -> ResponseReturnValue:
    """Ready only when the database (and Redis, when configured) answer within bounds."""
    checks: dict[str, str] = {}
    try:
        db.session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
        db.session.rollback()
        log.warning("readiness: database unavailable", extra={"error": type(exc).__name__})
        checks["database"] = "unavailable"
    if current_app.config.get("REDIS_URL"):
        from bastion.redis_client import get_redis

        try:
            get_redis().ping()
            checks["redis"] = "ok"
        except Exception as exc:  # noqa: BLE001
            log.warning("readiness: redis unavailable", extra={"error": type(exc).__name__})
            checks["redis"] = "unavailable"
    ready = all(v == "ok" for v in checks.values())
    return {"status": "ok" if ready else "unavailable", "checks": checks}, 200 if ready else 503
