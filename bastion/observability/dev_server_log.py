"""The development server's own request lines, without the secrets of emailed links.

``flask run`` (``make run``) logs every request as Werkzeug received it, through the
``werkzeug`` logger: ``"GET /setup/<token> HTTP/1.1" 200 -`` wrote a live first-admin
link, reset link or confirmation link to the terminal and whatever keeps its output, though
Bastion's own request log redacts them. A filter on that logger gives those lines the same
redaction (``redact_path``) and drops the query string, as the request log does. gunicorn
never logs through that logger; nothing else changes.
"""

from __future__ import annotations

import logging
import re

from bastion.observability.redaction import REDACTED, redact_path

# The request target after the method, up to a space, or an ANSI colour's escape (the
# server colours lines by status).
_TARGET = re.compile(r"(?<= )/[^ \x1b]*")


def _redacted_target(match: re.Match[str]) -> str:
    path, query, _ = match.group(0).partition("?")
    return redact_path(path) + (f"?{REDACTED}" if query else "")


class RedactRequestLines(logging.Filter):
    """Rewrite the request line argument of Werkzeug's ``log_request`` records."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 3 and isinstance(args[0], str):
            record.args = (_TARGET.sub(_redacted_target, args[0], count=1), *args[1:])
        return True


def install() -> None:
    """Add the filter to the ``werkzeug`` logger once, however many apps are made."""
    logger = logging.getLogger("werkzeug")
    if not any(isinstance(f, RedactRequestLines) for f in logger.filters):
        logger.addFilter(RedactRequestLines())
