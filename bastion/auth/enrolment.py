"""Mandatory 2FA: users whose role is in BASTION_REQUIRE_2FA_ROLES enrol before anything else."""

from __future__ import annotations

from flask import current_app, redirect, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user

from bastion.models import User
from bastion.security.redirects import is_safe_next

# What such a user may still reach: the enrolment page itself, re-authentication (which the
# enrolment page may ask for), signing out, and static files.
ALLOWED = frozenset({"account.two_factor_setup", "auth.reauth", "auth.logout", "static"})


def is_required(user: User) -> bool:
    """Whether the user's role must have 2FA (BASTION_REQUIRE_2FA_ROLES)."""
    return user.role_name in current_app.config["REQUIRE_2FA_ROLES"]


def require_enrolment() -> ResponseReturnValue | None:
    """Access check (see ``add_access_check``) run for every signed-in request."""
    if not must_enrol(current_user):
        return None
    if request.endpoint in ALLOWED:
        return None
    if request.path.startswith("/api/"):
        from flask import abort

        abort(403, description="Two-factor authentication must be set up for this account.")
    # The setup page itself says why (no flash: it would say the same thing twice). The page
    # asked for is offered once enrolled; a POST cannot be replayed, so it names none.
    target = request.full_path.rstrip("?") if request.method in ("GET", "HEAD") else None
    wanted = target if target and is_safe_next(target) else None
    return redirect(url_for("account.two_factor_setup", next=wanted))


def must_enrol(user: User) -> bool:
    """Signed in but not yet enrolled although the role requires it: sent to set-up."""
    return not user.has_2fa and is_required(user)
