"""Mandatory 2FA: users whose role is in BASTION_REQUIRE_2FA_ROLES enrol before anything else."""

from __future__ import annotations

from flask import current_app, flash, redirect, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user

# What such a user may still reach: the enrolment page itself, re-authentication (which the
# enrolment page may ask for), signing out, and static files.
ALLOWED = frozenset({"account.two_factor_setup", "auth.reauth", "auth.logout", "static"})


def require_enrolment() -> ResponseReturnValue | None:
    """Access check (see ``add_access_check``) run for every signed-in request."""
    required = current_app.config["REQUIRE_2FA_ROLES"]
    if current_user.has_2fa or current_user.role_name not in required:
        return None
    if request.endpoint in ALLOWED:
        return None
    if request.path.startswith("/api/"):
        from flask import abort

        abort(403, description="Two-factor authentication must be set up for this account.")
    flash("Your role requires two-factor authentication. Set it up to continue.", "info")
    return redirect(url_for("account.two_factor_setup"))
