"""Open-redirect defence: only same-site, relative targets are ever followed."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from flask import request, url_for


def is_safe_next(target: str | None) -> bool:
    """True for a plain local path such as ``/articles?page=2``.

    Refused: absolute URLs, scheme-relative ``//host``, backslash tricks ``/\\host`` (browsers
    treat ``\\`` as ``/``), control characters and any scheme such as ``javascript:``.
    """
    if not target or len(target) > 2048:
        return False
    # Judge the decoded form too: "/%2F%2Fhost" or "/%5Chost" must not pass as local.
    decoded = unquote(target)
    if decoded != target and not is_safe_next(decoded):
        return False
    if any(ord(c) < 0x21 or c == "\x7f" for c in target) or "\\" in target:
        return False
    if not target.startswith("/") or target.startswith("//"):
        return False
    parts = urlsplit(target)
    return not parts.scheme and not parts.netloc


def safe_next_url(default_endpoint: str = "main.index") -> str:
    """The request's ``next`` (form or query) when safe, else the default page."""
    target = request.form.get("next") or request.args.get("next")
    return target if target is not None and is_safe_next(target) else url_for(default_endpoint)
