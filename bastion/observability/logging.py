"""JSON logs, one object per line, each tagged with the request id.

Why not a logging package: the standard library does this in a few lines, and owning the
formatter lets us guarantee that passwords, tokens and cookies are never written.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid
from typing import Any

import orjson
from flask import Flask, Response, g, has_request_context, request

REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")
SENSITIVE = re.compile(r"pass|secret|token|authorization|cookie|otp|code|csrf", re.I)
_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def _redact(value: Any, key: str = "") -> Any:
    if key and SENSITIVE.search(key):
        return "**********"
    if isinstance(value, dict):
        return {k: _redact(v, str(k)) for k, v in value.items()}
    return value


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if has_request_context():
            entry["request_id"] = getattr(g, "request_id", None)
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = _redact(value, key)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


logging.Formatter.converter = time.gmtime


def configure_logging(app: Flask) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JSONFormatter())
    # Tests read records through pytest's caplog instead of stdout.
    handlers = [] if app.testing else [handler]
    root = logging.getLogger("bastion")
    root.handlers[:] = handlers
    root.setLevel(app.config.get("LOG_LEVEL", "INFO"))
    root.propagate = app.testing
    app.logger.handlers[:] = handlers
    app.logger.propagate = app.testing
    app.before_request(_start_request)
    app.after_request(_log_request)


def _start_request() -> None:
    g.request_started = time.perf_counter()
    supplied = request.headers.get("X-Request-ID", "")
    g.request_id = supplied if REQUEST_ID_RE.match(supplied) else uuid.uuid4().hex


_access_log = logging.getLogger("bastion.request")


def _log_request(response: Response) -> Response:
    response.headers["X-Request-ID"] = g.get("request_id", "")
    from flask_login import current_user

    user_id = None
    try:
        user_id = current_user.id if current_user.is_authenticated else None
    except Exception:  # noqa: BLE001 - never let logging break a response
        user_id = None
    _access_log.info(
        "request",
        extra={
            "method": request.method,
            "path": request.path,  # never the query string: it may carry tokens
            "status": response.status_code,
            "duration_ms": round((time.perf_counter() - g.get("request_started", 0)) * 1000, 2),
            "user_id": user_id,
            "ip": request.remote_addr,
        },
    )
    return response
