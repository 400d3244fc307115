"""Flask's signed session cookie, without building its signer for requests that carry none.

Flask's ``SecureCookieSessionInterface`` makes a new itsdangerous serializer (with the list
of fallback keys) on every request before it looks for the cookie: about 12 us. API calls
and most anonymous page views have no session cookie, and for them the stock answer is a
new empty session whatever the signer; this looks for the cookie first. A request with
the cookie, and an app without a secret key, take the stock path unchanged, so signature
checks, expiry and the refusal of tampered cookies are Flask's own.

A HEAD request never changes the cookie. Flask answers HEAD by running the GET view and
dropping the body, so a page that shows a flash message takes it out of the session; saved,
the message was gone before the browser's GET (a link preview or a prefetch could eat
"your password is changed"). Whatever the view did to the session is left unsaved instead.
"""

from __future__ import annotations

from flask import Flask, Request, Response
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface, SessionMixin

from bastion.security.fixed_headers import add_vary


class BastionSession(SecureCookieSession):
    """Flask's signed-cookie session, marked when its changes must not be saved."""

    #: Set for HEAD requests: the answer has no body, so no change may reach the cookie.
    read_only = False


class CookieFirstSessionInterface(SecureCookieSessionInterface):
    session_class = BastionSession

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if app.secret_key and (
            # No Cookie header at all: nothing to parse (Werkzeug's ``request.cookies``
            # walks every header to find it, about 15 us).
            not request.environ.get("HTTP_COOKIE")
            or not request.cookies.get(self.get_cookie_name(app))
        ):
            opened: SecureCookieSession | None = self.session_class()
        else:
            opened = super().open_session(app, request)
        if request.method == "HEAD" and isinstance(opened, BastionSession):
            opened.read_only = True
        return opened

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        """Flask's own steps for an empty session that nothing changed, without first
        reading the seven cookie settings (each a method and a config lookup) that only a
        cookie to set or delete needs: ``Vary: Cookie`` if the session was looked at, and
        no cookie. Any other session (one with data, or one emptied or changed during the
        request, whose cookie must be deleted) takes Flask's path unchanged. A HEAD
        request's session is never saved: the cookie the client holds stays as it was."""
        if (not session and not session.modified) or getattr(session, "read_only", False):
            if session.accessed:
                add_vary(response.headers, "Cookie")  # response.vary.add, without re-parsing
            return
        super().save_session(app, session, response)
