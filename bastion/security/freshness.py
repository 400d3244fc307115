"""Recent re-authentication for sensitive actions (email, password, 2FA, tokens, roles).

A session is "fresh" when its record's ``reauth_at`` (set at login and by /auth/reauth) is
within BASTION_REAUTH_MINUTES (default 10). Stale sessions are sent to /auth/reauth and come
back to the page they wanted.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any, TypeVar

from flask import abort, current_app, g, redirect, request, url_for

from bastion.models import utcnow

F = TypeVar("F", bound=Callable[..., Any])


def is_fresh() -> bool:
    record = g.get("session_record")
    if record is None or record.reauth_at is None:
        return False
    window = timedelta(minutes=current_app.config["REAUTH_MINUTES"])
    return bool(utcnow() - record.reauth_at < window)


def fresh_required(view: F) -> F:
    """Decorate *after* the access-policy decorator; keeps the policy attribute visible."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not is_fresh():
            if request.path.startswith("/api/"):
                abort(401, description="Re-authentication required.")
            target = request.full_path.rstrip("?") if request.method == "GET" else request.referrer
            return redirect(url_for("auth.reauth", next=target or url_for("main.index")))
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
