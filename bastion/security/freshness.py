"""Recent re-authentication for sensitive actions (email, password, 2FA, tokens, roles).

A session is "fresh" when its record's ``reauth_at`` (set at login and by /auth/reauth) is
within BASTION_REAUTH_MINUTES (default 10). Stale sessions are sent to /auth/reauth and come
back to the page they wanted (for a download, to the page that offers it: the user starts it
there, ``bastion.security.fetch_metadata.landing_page``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import abort, current_app, g, redirect, request, url_for

from bastion.models import utcnow
from bastion.security.redirects import is_safe_next

F = TypeVar("F", bound=Callable[..., Any])


def is_fresh() -> bool:
    record = g.get("session_record")
    if record is None or record.reauth_at is None:
        return False
    window = timedelta(minutes=current_app.config["REAUTH_MINUTES"])
    return bool(utcnow() - record.reauth_at < window)


def referring_page() -> str | None:
    """The local path of the page a form was posted from, or None.

    A POST cannot be replayed after re-authentication, so the user goes back to the form.
    The Referer is a full URL, which ``is_safe_next`` (rightly) refuses; it is reduced to
    its path here, and only when it names this very origin: any other site, a malformed
    header or a path a browser would read as a host gives None.
    """
    referrer = request.referrer
    if not referrer:
        return None
    try:
        page, here = urlsplit(referrer), urlsplit(request.host_url)
    except ValueError:  # "http://[bad": not a URL at all
        return None
    if (page.scheme.lower(), page.netloc.lower()) != (here.scheme, here.netloc.lower()):
        return None
    target = f"{page.path or '/'}?{page.query}" if page.query else page.path or "/"
    return target if is_safe_next(target) else None


def fresh_required(view: F) -> F:
    """Decorate *after* the access-policy decorator; keeps the policy attribute visible.

    A stale GET goes to /auth/reauth with itself as ``next``; for a download
    (``fetch_metadata.download``) that page says so, and the password leads to the page
    that offers the file, not into the download (``fetch_metadata.landing_page``).
    """

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not is_fresh():
            if request.path.startswith("/api/"):
                abort(401, description="Re-authentication required.")
            if request.method in ("GET", "HEAD"):
                target: str | None = request.full_path.rstrip("?")
            else:
                target = referring_page()
            # Without a target the re-authentication page returns to the account page.
            return redirect(url_for("auth.reauth", next=target) if target
                            else url_for("auth.reauth"))
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
