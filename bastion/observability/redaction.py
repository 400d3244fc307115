"""Paths and URLs fit for logs and the audit trail: the secrets of emailed links removed.

Emailed and setup links carry their secret in the path (``/auth/reset/<token>``,
``/setup/<token>``...), not in the query string. Logging ``request.path`` as it was wrote
live one-time links for anyone who reads logs, the audit export or a CSP report.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

from flask import request

REDACTED = "[redacted]"
# Routes whose next path segment is a secret. A test walks the URL map so that every
# route with a ``<token>`` argument is listed here; the nginx access log redacts the same.
LINK_PREFIXES = ("/auth/reset/", "/auth/confirm/", "/setup/", "/account/email/")
_SLASHES = re.compile(r"/{2,}")
# Bearer credentials by their shape, wherever a client put one in a path (a token revoked
# by its value, ``DELETE /api/v1/tokens/bst_...``; a refresh token pasted into a URL): a
# personal access token (``bst_`` + url-safe text) or a JWT (``eyJ`` + three parts).
TOKEN_IN_PATH = re.compile(
    r"bst_[A-Za-z0-9_-]+|eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"
)


def _link_prefix(path: str) -> str | None:
    """The link route ``path`` leads to, also through repeated slashes (the router
    redirects ``/auth//reset/T`` to the link, so it is as live)."""
    if "//" in path:
        path = _SLASHES.sub("/", path)
    if not path.startswith(LINK_PREFIXES):
        return None
    return next(prefix for prefix in LINK_PREFIXES if path.startswith(prefix))


def is_link_path(path: str) -> bool:
    return _link_prefix(path) is not None


def redact_path(path: str) -> str:
    """``path`` with everything after a link route's prefix replaced, matched or not, and
    any access token in it replaced."""
    prefix = _link_prefix(path)
    if prefix is not None:
        return prefix + REDACTED
    if "bst_" in path or "eyJ" in path:  # the search only for paths that may hold one
        return TOKEN_IN_PATH.sub(REDACTED, path)
    return path


def request_path() -> str:
    """This request's path as a log line or audit row may show it."""
    return redact_path(request.path)


def redact_url(value: str) -> str:
    """A URL reduced to scheme, host and redacted path (no query, no fragment, no
    ``user:password@``); other values (CSP keywords such as ``inline``) as they are."""
    if "/" not in value:
        return value
    try:
        parts = urlsplit(value)
    except ValueError:
        return REDACTED
    path = unquote(parts.path)  # as the router reads it: /auth/%72eset/T is a reset link
    if parts.scheme and parts.netloc:
        host = parts.netloc.rpartition("@")[2]  # credentials in a URL are a secret too
        return f"{parts.scheme}://{host}{redact_path(path)}"
    if value.startswith("/"):
        return redact_path(path)
    return value
