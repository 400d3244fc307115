"""Gunicorn's own log lines in the app's format, without the request targets they quote.

Gunicorn writes its start-up, worker boots, worker timeouts and refused requests through the
``gunicorn.error`` logger in a plain-text format, and a failed worker boot as a traceback of
many lines: one stderr stream mixed JSON with text that a JSON log pipeline splits or drops,
and the events operators alert on (``WORKER TIMEOUT``, a worker that cannot boot) were the
ones lost. ``JSONLogger`` (``logger_class`` in ``gunicorn.conf.py``) gives those lines the
app's ``JSONFormatter``: one JSON object per line, the traceback in ``exc``.

Gunicorn also quotes what it could not parse, "Invalid HTTP request line: 'GET
/auth/reset/<token>?… HTTP/1.1'", "Invalid HTTP Header: 'Authorization Bearer …'", and the
target of a request that failed ("Error handling request GET /setup/<token>?…"). Those are
reduced as the app's own request log is: the kind of error without the quoted bytes, the
path without its query and with the secrets of emailed links redacted.
"""

from __future__ import annotations

import logging
from typing import Any

from gunicorn.glogging import Logger
from gunicorn.http.errors import NoMoreData, ParseException

from bastion.observability.logging import JSONFormatter
from bastion.observability.redaction import redact_path

_INVALID_REQUEST = "Invalid request from ip="
_FAILED_REQUEST = "Error handling request %s"


def _loggable_target(target: object) -> str:
    """A request target as the request log shows a path: no query, links redacted."""
    return redact_path(str(target).split("?", 1)[0].split("#", 1)[0])


def _without_request_bytes(arg: object) -> object:
    """A parse error or premature end as its kind only: its text is the request's own bytes
    ("No more data after: b'...Authorization: Bearer ...'", at the debug level)."""
    if isinstance(arg, ParseException | NoMoreData):
        return type(arg).__name__
    return arg


def hide_request_targets(record: logging.LogRecord) -> bool:
    """Logging filter: drop what gunicorn quotes from a request before the line is written."""
    if isinstance(record.args, tuple) and record.args:
        record.args = tuple(_without_request_bytes(arg) for arg in record.args)
    if isinstance(record.msg, str) and record.msg.startswith(_INVALID_REQUEST):
        # "...: Invalid HTTP request line: '<the line>'" keeps "...: Invalid HTTP request
        # line"; unquoted facts such as "Request Line is too large (5056 > 4094)" stay whole.
        quote = min((i for i in (record.msg.find("'"), record.msg.find('"')) if i >= 0),
                    default=len(record.msg))
        record.msg = record.msg[:quote].rstrip(": ")
    elif record.msg in (_FAILED_REQUEST, _FAILED_REQUEST + " %s") and record.args:
        args = tuple(record.args) if isinstance(record.args, tuple) else (record.args,)
        record.args = (*args[:-1], _loggable_target(args[-1]))
    return True


class JSONLogger(Logger):
    """Gunicorn's logger, writing the app's JSON lines and no request targets."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for handler in self.error_log.handlers:
            handler.setFormatter(JSONFormatter())
        self.error_log.addFilter(hide_request_targets)  # added once, also on a reload
