"""Paths and URLs fit for logs and the audit trail: the secrets of emailed links removed.

Emailed and setup links carry their secret in the path (``/auth/reset/<token>``,
``/setup/<token>``...), not in the query string. Logging ``request.path`` as it was wrote
live one-time links for anyone who reads logs, the audit export or a CSP report.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import request

REDACTED = "[redacted]"
# Routes whose next path segment is a secret. A test walks the URL map so that every
# route with a ``<token>`` argument is listed here; the nginx access log redacts the same.
LINK_PREFIXES = ("/auth/reset/", "/auth/confirm/", "/setup/", "/account/email/")


def redact_path(path: str) -> str:
    """``path`` with the secret segment of a link route replaced, matched or not."""
    if not path.startswith(LINK_PREFIXES):
        return path
    for prefix in LINK_PREFIXES:
        if path.startswith(prefix):
            rest = path[len(prefix):]
            slash = rest.find("/")
            return prefix + REDACTED + ("" if slash < 0 else rest[slash:])
    return path  # unreachable: startswith(tuple) matched one of them


def request_path() -> str:
    """This request's path as a log line or audit row may show it."""
    return redact_path(request.path)


def redact_url(value: str) -> str:
    """A URL reduced to scheme, host and redacted path (no query, no fragment); other
    values (CSP keywords such as ``inline``) as they are."""
    if "/" not in value:
        return value
    try:
        parts = urlsplit(value)
    except ValueError:
        return REDACTED
    if parts.scheme and parts.netloc:
        return f"{parts.scheme}://{parts.netloc}{redact_path(parts.path)}"
    if value.startswith("/"):
        return redact_path(parts.path)
    return value
