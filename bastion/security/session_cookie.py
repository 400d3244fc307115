"""Flask's signed session cookie, without building its signer for requests that carry none.

Flask's ``SecureCookieSessionInterface`` makes a new itsdangerous serializer (with the list
of fallback keys) on every request before it looks for the cookie: about 12 us. API calls
and most anonymous page views have no session cookie, and for them the stock answer is a
new empty session whatever the signer; this looks for the cookie first. A request with
the cookie, and an app without a secret key, take the stock path unchanged, so signature
checks, expiry and the refusal of tampered cookies are Flask's own.
"""

from __future__ import annotations

from flask import Flask, Request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface


class CookieFirstSessionInterface(SecureCookieSessionInterface):
    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if app.secret_key and (
            # No Cookie header at all: nothing to parse (Werkzeug's ``request.cookies``
            # walks every header to find it, about 15 us).
            not request.environ.get("HTTP_COOKIE")
            or not request.cookies.get(self.get_cookie_name(app))
        ):
            return self.session_class()
        return super().open_session(app, request)
