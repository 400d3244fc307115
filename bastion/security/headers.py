"""Response hardening: Talisman for CSP/HSTS/framing, plus what Talisman does not cover.

HTTPS is enforced here rather than by Talisman's ``force_https`` because Talisman also
trusts a client-sent ``X-Forwarded-Proto``; ``request.is_secure`` is only true behind a
proxy when ``ProxyFix`` was configured with ``BASTION_PROXY_HOPS``.

These hooks run for every answer, so they look ``request``, ``session`` and ``current_user``
up once (``_get_current_object()``) instead of at every use: each use of a context proxy
costs about 2 us on a slow host (Werkzeug's ``LocalProxy``), and Bastion's hooks made
dozens per request.
"""

from __future__ import annotations

from flask import Flask, Request, Response, g, redirect, request, session
from flask.typing import ResponseReturnValue
from flask_login import current_user
from werkzeug.sansio.utils import get_current_url

from bastion.extensions import talisman
from bastion.observability.redaction import is_link_path
from bastion.security.fixed_headers import FixedHeaders, add_vary
from bastion.security.header_values import (
    FRAME_OPTIONS,
    HSTS_MAX_AGE,
    PERMISSIONS_POLICY,
    REFERRER_POLICY,
    STATIC_HEADERS,
)

CSP: dict[str, str] = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self'",
    "font-src": "'self'",
    "connect-src": "'self'",
    "manifest-src": "'self'",
    "media-src": "'none'",
    "worker-src": "'none'",
    "object-src": "'none'",
    "base-uri": "'none'",
    "frame-src": "'none'",
    "frame-ancestors": "'none'",
    "form-action": "'self'",
    # DOM XSS sinks (innerHTML, script text, eval) refuse plain strings, and no policy may
    # be created to turn one into trusted HTML: the site's scripts write none.
    "require-trusted-types-for": "'script'",
    "trusted-types": "'none'",
}
# Fixed headers computed once, not per request. What a view set itself is kept.
_STATIC_HEADERS = FixedHeaders(STATIC_HEADERS.items(), replace=False)


def init_headers(app: Flask) -> None:
    csp = dict(CSP)
    if app.config["FORCE_HTTPS"]:
        csp["upgrade-insecure-requests"] = ""
    talisman.init_app(
        app,
        force_https=False,
        frame_options=FRAME_OPTIONS,
        strict_transport_security=True,
        strict_transport_security_max_age=HSTS_MAX_AGE,
        strict_transport_security_include_subdomains=True,
        strict_transport_security_preload=bool(app.config["HSTS_PRELOAD"]),
        content_security_policy=csp,
        content_security_policy_nonce_in=["script-src", "style-src"],
        content_security_policy_report_uri="/csp-report",
        referrer_policy=REFERRER_POLICY,
        permissions_policy=PERMISSIONS_POLICY,
        feature_policy={},
        document_policy={},
        session_cookie_secure=app.config["SESSION_COOKIE_SECURE"],
        session_cookie_http_only=True,
        session_cookie_samesite=app.config["SESSION_COOKIE_SAMESITE"],
        x_content_type_options=True,
        x_xss_protection=False,
    )
    if app.config["FORCE_HTTPS"]:
        app.before_request(require_https)
    app.after_request(add_security_headers)
    # Talisman writes its policy on every answer; hooks run last registered first, so this
    # one goes to the front to run after Talisman's.
    app.after_request_funcs.setdefault(None, []).insert(0, no_referrer_on_link_pages)


def require_https() -> ResponseReturnValue | None:
    """Send plain-HTTP requests to HTTPS; bearer clients (the API, a metrics scraper) get a
    refusal, not a redirect: their token already crossed in clear, and a client that
    follows the redirect (Prometheus does by default) would keep sending it so, unnoticed.
    ``/api/docs`` is a page for people, read without a token, so it is redirected like one."""
    req = request._get_current_object()  # type: ignore[attr-defined]
    if req.is_secure or req.endpoint in ("health.healthz", "health.readyz"):
        return None
    if (req.path.startswith("/api/") and req.endpoint != "api_web.docs") or (
        req.endpoint == "metrics.export"
    ):
        from flask import abort

        abort(403, description="HTTPS is required.")
    # Built from its parts: whatever scheme the request came with (a proxy may pass on any
    # X-Forwarded-Proto, even "x://evil.example/"), the target is https on the same,
    # allow-listed host.
    target = get_current_url("https", req.host, req.root_path, req.path, req.query_string)
    return redirect(target, code=308)


# Session keys that make a response personal: a signed-in session, a pending second step
# (bastion.auth.routes.PENDING_KEY). A CSRF token left in the session by a form seen earlier
# does not: public pages rendered without one stay cacheable (no-cache and their ETag).
_PRIVATE_SESSION_KEYS = ("sid", "pending_2fa")
SAFE_METHODS = frozenset({"GET", "HEAD"})


def add_security_headers(response: Response) -> Response:
    present = _STATIC_HEADERS.apply(response.headers)
    req: Request = request._get_current_object()  # type: ignore[attr-defined]
    if _is_private(req, response):
        if "cache-control" in present:
            response.headers["Cache-Control"] = "no-store"
        else:  # the same as the line above then, without walking every header for it
            response.headers.add("Cache-Control", "no-store")
        add_vary(response.headers, "Cookie")  # response.vary.add, without re-parsing
    elif "cache-control" not in present:
        # Without one a shared cache applies its own lifetime (RFC 9111 4.2.2): a listing
        # would keep showing a withdrawn article, a token answer could be kept. "no-cache"
        # makes caches ask every time; answers to anything but GET are never stored.
        response.headers.add(
            "Cache-Control", "no-cache" if req.method in SAFE_METHODS else "no-store"
        )
    if "server" in present:
        del response.headers["Server"]
    if "date" in present:
        # Werkzeug's conditional answers (ETag pages, the API list, static files) add one
        # and the server sends its own: two Date headers (RFC 9110 allows one) from the
        # development server. gunicorn drops the app's; the server's is the one to keep.
        del response.headers["Date"]
    return response


def no_referrer_on_link_pages(response: Response) -> Response:
    """A page whose address holds an emailed link's secret (``/auth/reset/<token>``...)
    sends no ``Referer`` at all: under the site's policy its stylesheet, script, header
    links and form redirect carried the live token to this origin, and so to anything
    that logs requests in front of the app (a CDN, a proxy's common log format)."""
    if is_link_path(request.path):
        response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _is_private(req: Request, response: Response) -> bool:
    """Whether this answer belongs to one visitor, so no cache may keep it.

    Anything shown to a signed-in user or tied to a session (a form's CSRF token, the step
    between password and code, a flash message, a session cookie set or cleared), and the
    pages an emailed link opens, must not be stored by a shared cache or kept in the
    browser's back/forward history. Static files are the same bytes for everyone and keep
    their own caching (bastion.static_assets); an error page under /static is a page like
    any other (a signed-in visitor's 404 shows their name and a CSRF token, and a cache
    keeping "*.css" by its name would hand it to the next visitor).
    """
    if req.endpoint == "static" and response.status_code < 400:
        return False
    sess = session._get_current_object()  # type: ignore[attr-defined]
    return bool(
        "csrf_token" in g  # this response carries a form token (Flask-WTF keeps it in g)
        or sess.modified  # it sets or clears the session cookie (a flash shown, an end)
        or not sess.keys().isdisjoint(_PRIVATE_SESSION_KEYS)  # any of them in the session
        or is_link_path(req.path)
        # Last: it may load the user from the database (down, while an outage page is sent).
        or _signed_in()
    )


def _signed_in() -> bool:
    user = current_user._get_current_object()  # type: ignore[attr-defined]
    return bool(user and user.is_authenticated)
