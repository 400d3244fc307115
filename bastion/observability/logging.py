"""JSON logs, one object per line, each tagged with the request id.

Why not a logging package: the standard library does this in a few lines, and owning the
formatter lets us guarantee that passwords, tokens and cookies are never written.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import sys
import time
from functools import lru_cache
from typing import Any

import orjson
from flask import Flask, Response, g, has_request_context, request, request_started
from flask_login import current_user

from bastion.observability import dev_server_log
from bastion.observability.redaction import redact_path
from bastion.observability.sentry import scrub_secrets

REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:-]{8,128}")
SENSITIVE = re.compile(r"pass|secret|token|authorization|cookie|otp|code|csrf", re.I)
_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
# What JSON leaves as it is but log readers act on: NEL and the Unicode line and paragraph
# separators split lines (``str.splitlines``, many viewers), C1 controls are terminal
# escapes (CSI), bidi overrides, isolates and marks reorder what a reader sees, and
# zero-width characters hide in a name ("/u/admin" + U+200B reads as "/u/admin").
_UNSAFE = str.maketrans(
    {c: f"\\u{ord(c):04x}" for c in (*map(chr, range(0x7F, 0xA0)), "\u2028", "\u2029",
                                      *map(chr, range(0x202A, 0x202F)),
                                      *map(chr, range(0x2066, 0x206A)),
                                      *map(chr, range(0x200B, 0x2010)), "\u061c",
                                      *map(chr, range(0x2060, 0x2065)), "\ufeff")}
)


@lru_cache(maxsize=1024)
def _sensitive(key: str) -> bool:
    """Whether a field name looks secret; remembered, as a few names repeat on every line."""
    return bool(SENSITIVE.search(key))


# A number under a name that says it counts or identifies (``token_id``, ``tokens_revoked``,
# ``otp_required``, ``recovery_codes_unrecorded``) is no secret: hidden, the audit lines lost
# which token an event was about. Only numbers and flags: a string under such a name is
# still redacted.
COUNT_OR_ID = re.compile(
    r"_(?:ids?|count|revoked|ended|retired|required|failures|days|left|unrecorded"
    r"|under_fallbacks)$"
)


def _redact(value: Any, key: str = "") -> Any:
    if key and _sensitive(key) and not (isinstance(value, int) and COUNT_OR_ID.search(key)):
        return "**********"
    if isinstance(value, dict):
        return {k: _redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):  # a list of dicts ("changes": [{"token": ...}])
        return [_redact(v) for v in value]
    return value


# PostgreSQL's DETAIL line quotes row values ("Key (email)=(...)", "Failing row contains
# (...)", the whole row); hide_parameters (config) only hides the statement's own values.
PG_DETAIL = re.compile(r"^DETAIL:.*$", re.M)


class JSONFormatter(logging.Formatter):
    _second: tuple[int, str] = (-1, "")  # the last second formatted, shared by all threads

    def _timestamp(self, record: logging.LogRecord) -> str:
        """UTC ISO 8601 with milliseconds; strftime runs once a second, not once a line."""
        second = int(record.created)
        cached = JSONFormatter._second
        if cached[0] != second:
            cached = JSONFormatter._second = (second, self.formatTime(record, "%Y-%m-%dT%H:%M:%S"))
        return f"{cached[1]}.{int(record.msecs):03d}Z"

    def formatException(self, ei: Any) -> str:  # noqa: N802 - logging's name
        """The traceback without the database's quotes of row values, nor the tokens and
        emailed links an exception's message quotes (Sentry's copy hides them too)."""
        return scrub_secrets(PG_DETAIL.sub("DETAIL: [redacted]", super().formatException(ei)))

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self._timestamp(record),
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
        line = _dumps(entry)
        # Inside JSON strings (the only place they can be) the escapes read back the same.
        return line if line.isascii() else line.translate(_UNSAFE)


_SEPARATORS = (",", ":")


def _dumps(entry: dict[str, Any]) -> str:
    """One JSON line, whatever the values: a formatter that raises loses the event, and
    logging then prints the raw record (message, arguments) unescaped to stderr.

    orjson refuses integers beyond 64 bits (a Content-Length header can be any number),
    text with lone surrogates (Python's JSON parser accepts "\\ud800") and keys that are
    not strings; only those lines take the slower path.
    """
    try:
        return orjson.dumps(entry, default=str).decode()
    except TypeError:  # orjson.JSONEncodeError
        pass
    # ASCII, so lone surrogates become escapes; separators as orjson writes them.
    return json.dumps(_plain(entry), default=str, separators=_SEPARATORS)


def _plain(value: Any) -> Any:
    """``value`` with every mapping key a string, as JSON needs."""
    if isinstance(value, dict):
        return {k if isinstance(k, str) else str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


logging.Formatter.converter = time.gmtime


def configure_logging(app: Flask) -> None:
    # stderr, like gunicorn: CLI commands keep stdout for their own output (JSON reports).
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter())
    # Tests read records through pytest's caplog instead of stdout.
    handlers = [] if app.testing else [handler]
    root = logging.getLogger("bastion")
    root.handlers[:] = handlers
    root.setLevel(_level(app))
    root.propagate = app.testing
    app.logger.handlers[:] = handlers
    app.logger.propagate = app.testing
    # On request_started, not before_request: a URL value preprocessor that aborts (an id
    # beyond the column range) runs before every before_request hook, and its answer
    # needs the request id too.
    request_started.connect(_start_request, app)
    app.after_request(_log_request)
    dev_server_log.install()


# A command's level unless BASTION_LOG_LEVEL names one: warnings and errors still show.
COMMAND_LOG_LEVEL = "WARNING"


def _level(app: Flask) -> str:
    """``LOG_LEVEL``, or ``COMMAND_LOG_LEVEL`` for a ``flask`` command when the operator set
    no level: the INFO lines (a line per request ``security check`` makes, the audit line
    of a change ``create-admin`` records in the database) came out on stderr among the
    command's own output. The audit trail is the database's table, not these lines."""
    level = str(app.config.get("LOG_LEVEL", "INFO"))
    if app.testing or os.environ.get("BASTION_LOG_LEVEL") or not _running_a_command():
        return level
    return COMMAND_LOG_LEVEL


def _running_a_command() -> bool:
    """Whether the app was made for a ``flask`` command other than ``flask run``, which
    serves requests and logs them like gunicorn."""
    import click

    ctx = click.get_current_context(silent=True)
    return ctx is not None and ctx.command.name != "run"


# Both hooks run for every request: they look ``g``, ``request`` and ``current_user`` up
# once instead of at every use (each use of a context proxy costs about 2 us on a slow host).


def _start_request(_sender: Flask, **_extra: object) -> None:
    ctx_g = g._get_current_object()  # type: ignore[attr-defined]
    ctx_g.request_started = time.perf_counter()
    # Where ``request.headers`` finds it. Werkzeug would also re-decode the raw value as
    # UTF-8, which changes only non-ASCII text, and no id with any matches REQUEST_ID_RE.
    supplied = request.environ.get("HTTP_X_REQUEST_ID", "")
    # 128 random bits as 32 hex digits, the shape of uuid4().hex without building a UUID.
    # fullmatch: "$" also matches before a final newline, which would then reach every log
    # line and audit row, and make echoing the id as a header fail (a 500).
    ctx_g.request_id = supplied if REQUEST_ID_RE.fullmatch(supplied) else secrets.token_hex(16)


_access_log = logging.getLogger("bastion.request")


def _log_request(response: Response) -> Response:
    ctx_g = g._get_current_object()  # type: ignore[attr-defined]
    req = request._get_current_object()  # type: ignore[attr-defined]
    response.headers["X-Request-ID"] = ctx_g.get("request_id", "")
    user_id = None
    try:
        user = current_user._get_current_object()  # type: ignore[attr-defined]
        user_id = user.id if user.is_authenticated else None
    except Exception:
        user_id = None
    started = ctx_g.get("request_started", 0)
    _access_log.info(
        "request",
        extra={
            "method": req.method,
            # Never the query string, and emailed links' secrets redacted from the path.
            "path": redact_path(req.path),
            "status": response.status_code,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            "user_id": user_id,
            "ip": req.remote_addr,
        },
    )
    return response
