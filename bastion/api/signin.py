"""Password (+ second factor) checks for the API: sign-in at ``/auth/token`` and token creation.

Same rules as the web login, from the same modules: ``authenticate`` (generic answer, equal
timing), ``bastion.auth.throttle`` (growing delays per account and per address, shared by
every instance), ``bastion.auth.twofactor`` (encrypted TOTP secret, replay-safe codes,
single-use recovery codes), the same audit events and counters.
"""

from __future__ import annotations

import math

from flask import current_app

from bastion.auth import throttle, twofactor
from bastion.auth.login import who_tried
from bastion.auth.services import authenticate, find_login_user
from bastion.models import User
from bastion.observability import counters
from bastion.security import audit

GENERIC_FAILURE = "That username or password is not right, or the account cannot sign in."


class SignInError(Exception):
    def __init__(self, status: int, detail: str, *, retry_after: int | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.retry_after = status, detail, retry_after
        self.extra: dict[str, object] = {}


def _fail(login: str, ip: str, *, second_factor: bool = False) -> SignInError:
    # The throttle counted this attempt when it began (``_check_throttle``).
    known = find_login_user(login)
    audit.record(
        "login.2fa_failure" if second_factor else "login.failure",
        target_user_id=known.id if known else None,
        # Text naming no account only as a digest, as on the site: it may be a password.
        details={**who_tried(login, known), "channel": "api"},
    )
    counters.increment("2fa_failures" if second_factor else "login_failures")
    if second_factor:
        return SignInError(401, "The one-time code is not right or was already used.")
    return SignInError(401, GENERIC_FAILURE)


def _check_throttle(login: str, ip: str) -> None:
    wait = throttle.reserve(login, ip)  # counts the attempt before the hash runs
    if wait is None:
        return
    known = find_login_user(login)
    audit.record(
        "login.throttled",
        target_user_id=known.id if known else None,
        details={**who_tried(login, known), "wait": wait, "channel": "api"},
    )
    # No counter here: every 429 from the sign-in endpoints is counted as login throttling
    # by the metrics hook (bastion.observability.metrics), once.
    # Retry-After takes whole seconds; round up so a client that obeys it is let through.
    raise SignInError(
        429, "Too many failed attempts. Wait and try again.", retry_after=max(1, math.ceil(wait))
    )


def check_credentials(login: str, password: str, otp: str | None, ip: str) -> User:
    """The user when password (and code, if enrolled) are right; raises SignInError."""
    _check_throttle(login, ip)
    user = authenticate(login, password)
    if user is None:
        raise _fail(login, ip)
    if user.has_2fa:
        if not otp:
            throttle.refund(login, ip)  # the password was right; the code comes next
            refused = SignInError(401, "This account uses two-factor authentication: send 'otp'.")
            refused.extra = {"otp_required": True}
            raise refused
        if not twofactor.verify_totp_or_recovery(user, otp):
            raise _fail(login, ip, second_factor=True)
    elif user.role_name in current_app.config["REQUIRE_2FA_ROLES"]:
        throttle.refund(login, ip)
        raise SignInError(
            403, "Your role requires two-factor authentication: enrol on the account page first."
        )
    throttle.record_login_success(login, ip)
    return user


def sign_in(login: str, password: str, otp: str | None, ip: str) -> User:
    user = check_credentials(login, password, otp, ip)
    audit.record(
        "login.success",
        actor_id=user.id,
        target_user_id=user.id,
        details={"channel": "api", "method": "2fa" if user.has_2fa else "password"},
    )
    return user
