"""Public pages for anonymous visitors: rendered at most once per few seconds, with ETags.

Why: an anonymous visitor's home page is the same bytes for everyone (no CSRF token, no
nonce in the body, no name), yet rendering it costs a query and a template per request.
Each worker keeps the rendered body for ``PUBLIC_PAGE_CACHE_SECONDS`` (0 turns this off);
every response still passes through the full request pipeline (rate limits, access
policy, fresh CSP nonce, headers, logging) because only the view's return value is reused.

A body is stored only when rendering it left the session untouched and did not embed the
request's CSP nonce, so a page that grows a form (CSRF token) or an inline script can never
leak one visitor's token or nonce to another. Signed-in visitors, visitors with pending
flash messages and anything but GET/HEAD always get a fresh render.

Responses carry a strong ETag of the body and ``Cache-Control: no-cache`` with
``Vary: Cookie``: browsers revalidate every time and get ``304 Not Modified`` when nothing
changed; a shared cache may keep only the anonymous version.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import Response, current_app, g, make_response, request, session
from flask_login import current_user

F = TypeVar("F", bound=Callable[..., Any])
_CACHE_KEY = "bastion.page_cache"


def _anonymous_reader() -> bool:
    if request.method not in ("GET", "HEAD"):
        return False
    if "sid" in session or "_flashes" in session:
        return False
    return not current_user.is_authenticated


def _store(key: tuple[str, ...], body: str, ttl: float) -> None:
    cache: dict[tuple[str, ...], tuple[float, str]] = current_app.extensions.setdefault(
        _CACHE_KEY, {}
    )
    if len(cache) > 256:  # bounded: query strings cannot grow it without limit
        cache.clear()
    cache[key] = (time.monotonic() + ttl, body)


def _cached(key: tuple[str, ...]) -> str | None:
    entry = current_app.extensions.get(_CACHE_KEY, {}).get(key)
    if entry is None or entry[0] <= time.monotonic():
        return None
    return str(entry[1])


def _personal(body: str) -> bool:
    """Did rendering embed something of this visitor's (CSRF token, nonce, session data)?"""
    # Flask-WTF keeps the token it generated in g, even when the session already held the
    # raw value and so was not modified.
    if session.modified or "csrf_token" in g:
        return True
    nonce = getattr(request, "csp_nonce", None)
    return bool(nonce and nonce in body)


def _conditional(body: str) -> Response:
    response = make_response(body)
    response.headers["Cache-Control"] = "no-cache"
    response.vary.add("Cookie")
    response.add_etag()
    response.make_conditional(request)  # turns itself into a 304 when the ETag matches
    return response


def cached_public_page(view: F) -> F:
    """Reuse the rendered page for anonymous visitors; always answer with an ETag."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not _anonymous_reader():
            return view(*args, **kwargs)
        ttl = float(current_app.config.get("PUBLIC_PAGE_CACHE_SECONDS", 0))
        key = (request.endpoint or "", request.path, request.query_string.decode("latin-1"))
        body = _cached(key) if ttl > 0 else None
        if body is None:
            result = view(*args, **kwargs)
            if not isinstance(result, str):
                return result
            if _personal(result):
                return result  # tied to this visitor: neither stored nor given an ETag
            body = result
            if ttl > 0:
                _store(key, body, ttl)
        return _conditional(body)

    return wrapper  # type: ignore[return-value]


def clear() -> None:
    """Forget every stored page (tests; a service may call it after a change)."""
    current_app.extensions.pop(_CACHE_KEY, None)
