"""Error answers: HTML pages for the site, RFC 9457 problem+json for the API.

No handler ever shows a traceback or an exception's text: clients get a stable title and a
helpful sentence; the details go to the log with the request id the client also sees.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from flask import Flask, Response, abort, g, render_template, request
from flask_wtf.csrf import CSRFError
from limits import parse as parse_limit
from werkzeug.exceptions import HTTPException, InternalServerError, SecurityError

from bastion.observability.redaction import request_path
from bastion.security.access import is_for_own_scripts

log = logging.getLogger("bastion.errors")

MESSAGES: dict[int, str] = {
    400: "The request could not be understood. Check what was sent and try again.",
    401: "You need to sign in to do that.",
    403: "You are not allowed to do that.",
    404: "There is nothing here. The page may have moved or never existed.",
    405: "That method is not allowed here.",
    413: "What was sent is too large.",
    415: "That content type is not supported here.",
    422: "The request was understood but some values are not valid.",
    429: "Too many requests. Please wait a moment and try again.",
    500: "Something went wrong on our side. It has been logged; please try again later.",
    503: "The service is temporarily unavailable. Please try again shortly.",
}


def wants_problem_json() -> bool:
    """The API, the machine endpoints and the views that answer this site's own scripts:
    none of them is shown to a person, and an error page would take the flash messages
    waiting for the next page."""
    return (request.path.startswith("/api/") or request.path in ("/csp-report", "/metrics")
            or is_for_own_scripts(request.endpoint))


def problem(
    status: int,
    detail: str | None = None,
    *,
    title: str | None = None,
    type_: str = "about:blank",
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """One JSON error envelope for the whole API (RFC 9457)."""
    from werkzeug.http import HTTP_STATUS_CODES

    body: dict[str, Any] = {
        "type": type_,
        "title": title or HTTP_STATUS_CODES.get(status, "Error"),
        "status": status,
        "detail": detail or MESSAGES.get(status, ""),
        "request_id": g.get("request_id"),
    }
    if extra:
        body.update(extra)
    resp = Response(orjson.dumps(body), status=status, mimetype="application/problem+json")
    for name, value in (headers or {}).items():
        resp.headers[name] = value
    return resp


def _detail_for(exc: HTTPException) -> str:
    if isinstance(exc, SecurityError):  # never reflect the untrusted Host back
        return "This site is not served under that host name."
    # Werkzeug's default descriptions are safe but generic; ours say what to do. A view may
    # pass its own description with abort(code, description="...").
    default = type(exc).description
    if exc.description and exc.description != default:
        return str(exc.description)
    return MESSAGES.get(exc.code or 500, str(default or ""))


# What an error's own headers tell the client to do: the methods allowed (405), when to
# come back (429, 503), the length a byte range must stay within (416).
_KEPT_HEADERS = ("allow", "retry-after", "content-range")


# A browser opened an address that only takes a form's POST (a link to ``/auth/logout``,
# a bookmarked "delete" button): "That method is not allowed here." told a person nothing.
OPENED_A_BUTTON = ("This address is used by a button on the site's pages and cannot be "
                   "opened as a page. Go back, or start again from the home page.")
# Its heading in the same plain words ("Method Not Allowed" named the protocol's rule).
OPENED_A_BUTTON_HEADING = "This address is not a page"


def _page_detail(status: int, detail: str) -> str:
    """The sentence a page shows. A rate limit's refusal carries only the limit's own text
    ("5 per 1 minute"), which alone told a person neither what happened nor how long to
    wait; the API keeps that text as its stable ``detail``, with ``Retry-After``."""
    if status == 405 and request.method in ("GET", "HEAD") and detail == MESSAGES[405]:
        return OPENED_A_BUTTON
    if status != 429:
        return detail
    try:
        limit = parse_limit(detail)
    except ValueError:  # a sentence of its own already (MESSAGES, a view's description)
        return detail
    unit = limit.GRANULARITY.name
    if limit.multiples == 1:  # "5 an hour", not the limit's own "5 per 1 hour"
        window, per = f"1 {unit}", f"{'an' if unit == 'hour' else 'a'} {unit}"
    else:
        window = per = f"{limit.multiples} {unit}s"
        per = f"every {per}"
    return (
        f"Too many requests: this allows {limit.amount} {per}. "
        f"Wait up to {window}, then try again."
    )


def handle_http_exception(exc: HTTPException, heading: str | None = None) -> Response:
    """A problem document for the API, else the site's error page, headed ``heading`` or
    the status's name."""
    status = exc.code or 500
    detail = _detail_for(exc)
    headers = {k: v for k, v in exc.get_headers() if k.lower() in _KEPT_HEADERS}
    if wants_problem_json():
        resp = problem(status, detail, headers=headers)
        if request.url_rule is None:  # the router's own error: no blueprint hook runs
            from bastion.api import cors_when_unrouted

            resp = cors_when_unrouted(resp)
    else:
        said = _page_detail(status, detail)
        if said == OPENED_A_BUTTON:
            heading = heading or OPENED_A_BUTTON_HEADING
        page = _error_page(status, said, exc, heading or exc.name)
        resp = Response(page, status=status, mimetype="text/html")
        for name, value in headers.items():
            resp.headers[name] = value
    return resp


def _error_page(status: int, detail: str, exc: HTTPException, heading: str) -> str:
    """The site's error page; a bare page when the request cannot build URLs (bad Host)."""
    from flask.globals import request_ctx

    if request_ctx.url_adapter is not None:
        try:
            return render_template(
                "errors/error.html", status=status, detail=detail, exc=exc, heading=heading
            )
        except Exception:
            log.exception("error page failed to render")
    from markupsafe import escape

    # The reference too: it is all a person can quote to support about this failure.
    request_id = g.get("request_id")
    reference = f"<p>Reference: <code>{escape(request_id)}</code></p>" if request_id else ""
    return (
        f"<!doctype html><html lang=en><meta charset=utf-8><title>{status}</title>"
        f"<h1>{escape(heading)}</h1><p>{escape(detail)}</p>{reference}</html>"
    )


def handle_csrf_error(exc: CSRFError) -> Response:
    from bastion.observability import counters
    from bastion.security import audit
    from bastion.security.throttle_audit import first_this_minute

    path = request_path()
    # The check runs before the rate limits, for anyone, on any form: one request after
    # another wrote an undeletable row each. Every failure is logged and counted; at most
    # one row per client a minute is stored, as for rate-limit breaches and CSP reports.
    # False while the shared store is down: this log line is then the record.
    audited = first_this_minute("bastion-csrf-audit", request.remote_addr or "")
    log.warning("csrf failure", extra={"reason": exc.description, "path": path,
                                       "audited": audited})
    if audited:
        try:
            audit.record("csrf.failure", details={"path": path, "reason": exc.description})
        except Exception:
            log.exception("could not record csrf failure")
            _rollback()
    counters.increment("csrf_failures")
    exc.description = (
        "This form has expired or was sent from another site. Reload the page and try again."
    )
    # Not "Bad Request": the heading is what a person reads first.
    return handle_http_exception(exc, heading="This form has expired")


def handle_unexpected(exc: Exception) -> Response:
    from flask import current_app, got_request_exception

    _rollback()
    if _account_deleted_meanwhile():
        log.warning("request of a deleted account", extra={"path": request_path(),
                                                           "error": type(exc).__name__})
        return _signed_out_of_deleted_account()
    # Flask sends this signal only for exceptions no handler took; send it here too, so
    # error reporting (Sentry's Flask integration listens to it) sees what this page hides.
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    got_request_exception.send(app, exception=exc)
    log.exception("unhandled error", extra={"path": request_path()})
    return handle_http_exception(InternalServerError())


def _account_deleted_meanwhile() -> bool:
    """Whether the request's signed-in account is gone: an admin deleted it while the
    request ran, and what failed (its row loaded again after a rollback, a row that names
    it refused by a foreign key) failed for that reason, not a bug."""
    if g.get("_login_user") is None:  # nobody was signed in, or not yet looked up
        return False
    from sqlalchemy import select

    from bastion.extensions import db
    from bastion.models import User
    from bastion.security.audit import signed_in_id

    try:
        user_id = signed_in_id()
        if user_id is None:
            return False
        return db.session.scalar(select(User.id).where(User.id == user_id)) is None
    except Exception:  # the database itself failing: an ordinary error
        log.exception("could not look up the signed-in account after an error")
        _rollback()
        return False


def _signed_out_of_deleted_account() -> Response:
    """401, as for any request without a valid sign-in; a browser's cookie is emptied."""
    if wants_problem_json():
        return problem(401, "The token is not valid.",
                       headers={"WWW-Authenticate": 'Bearer realm="bastion", error="invalid_token"'})
    from flask import session
    from flask_login import logout_user
    from werkzeug.exceptions import Unauthorized

    from bastion.auth.sessions import CLEAR_SITE_DATA

    logout_user()
    session.clear()
    resp = handle_http_exception(
        Unauthorized(description="You are signed out: this account no longer exists.")
    )
    resp.headers["Clear-Site-Data"] = CLEAR_SITE_DATA
    return resp


def _rollback() -> None:
    """Drop a failed transaction, so the error page (which may load the user) can query."""
    try:
        from bastion.extensions import db

        db.session.rollback()
    except Exception:
        log.exception("rollback after error failed")


def not_found_beyond_id_range(_endpoint: str | None, values: dict[str, Any] | None) -> None:
    """Any ``<int:...>`` in any URL above the id column's range names nothing: 404 here,
    before a view or service passes it to the database."""
    from bastion.models.base import ID_MAX

    if values and any(isinstance(v, int) and v > ID_MAX for v in values.values()):
        abort(404, description="There is nothing with that id.")


def register_errorhandlers(app: Flask) -> None:
    app.url_value_preprocessor(not_found_beyond_id_range)
    app.register_error_handler(CSRFError, handle_csrf_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(Exception, handle_unexpected)
