"""The development server's own request lines, without the secrets of emailed links.

``flask run`` (``make run``) logs every request as Werkzeug received it, through the
``werkzeug`` logger: ``"GET /setup/<token> HTTP/1.1" 200 -`` wrote a live first-admin
link, reset link or confirmation link to the terminal and whatever keeps its output, though
Bastion's own request log redacts them. A filter on that logger gives those lines the same
redaction (``redact_path``) and drops the query string, as the request log does. gunicorn
never logs through that logger; nothing else changes.

Every word of the line is judged as the server routes it, not only the first one after the
method as written: ``/setup%2F<token>`` and ``http://host/setup/<token>`` reach the link
too, and a line refused with 400 is logged as received (and quoted in the error line), its
target anywhere in it.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote, urlsplit

from bastion.observability.redaction import REDACTED, redact_path

# The pieces of a logged line: a backslash escape, kept as it is (Werkzeug and repr() write
# control characters so: a tab between the words of a refused line), or a word and its
# query, if any. Words end at white space, at the ANSI colour escapes the server wraps the
# line in (by status), and at the quotes and brackets of the repr() that a 400's error line
# quotes the line in; a query runs to the next space.
_PIECE = re.compile(
    r"(?P<escape>\\(?:x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.))"
    r"|[^\s\x1b\\'\"()?]+(?:\?[^\s\x1b]*)?|\?[^\s\x1b]*"
)


def _routed(target: str) -> str:
    """The path the server routes ``target`` to: an absolute form's path, every escape
    decoded (``%2F`` too: Werkzeug decodes ``PATH_INFO`` before routing)."""
    try:
        parts = urlsplit(target)
    except ValueError:  # "http://[::1/..." and such: the path after the host, if any
        scheme, slashes, rest = target.partition("://")
        return unquote("/" + rest.partition("/")[2] if slashes else scheme)
    # Werkzeug's own reading: "//a/b" has no host; it is a path.
    path = f"/{parts.netloc}{parts.path}" if parts.netloc and not parts.scheme else parts.path
    return unquote(path)


def _redacted_piece(match: re.Match[str]) -> str:
    if match.group("escape"):
        return match.group(0)
    target, mark, _ = match.group(0).partition("?")
    for path in (_routed(target), unquote(target)):
        if (redacted := redact_path(path)) != path:
            target = redacted
            break
    return target + (f"?{REDACTED}" if mark else "")


def redact_line(text: str) -> str:
    """``text`` with each word that is or leads to a link's secret or a token redacted,
    and every query string replaced; everything else as it was."""
    return _PIECE.sub(_redacted_piece, text)


class RedactRequestLines(logging.Filter):
    """Rewrite the text arguments of Werkzeug's records: the request line of
    ``log_request``, the quoted line of a 400's ``code %d, message %s``."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and args:
            record.args = tuple(redact_line(a) if isinstance(a, str) else a for a in args)
        return True


def install() -> None:
    """Add the filter to the ``werkzeug`` logger once, however many apps are made."""
    logger = logging.getLogger("werkzeug")
    if not any(isinstance(f, RedactRequestLines) for f in logger.filters):
        logger.addFilter(RedactRequestLines())
