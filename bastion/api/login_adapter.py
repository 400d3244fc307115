"""Login throttling and second-factor checks used by ``POST /auth/token``.

The names match ``bastion.auth.throttle`` and ``bastion.auth.twofactor`` so the web login and
the API share one implementation; this module is the small, working stand-in for them.
Throttling counts failures in the rate limiter's storage (Redis in production), so every
instance sees the same counts.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pyotp
from limits import RateLimitItem, parse

from bastion.auth.services import canonical_username
from bastion.extensions import db, limiter
from bastion.models import User

# Failures allowed before further attempts wait: per account, and per client address.
ACCOUNT_LIMIT = parse("5 per 15 minutes")
IP_LIMIT = parse("30 per 15 minutes")


def _keys(login: str, ip: str) -> list[tuple[RateLimitItem, str, str]]:
    return [
        (ACCOUNT_LIMIT, "login-fail-account", canonical_username(login)[:254]),
        (IP_LIMIT, "login-fail-ip", ip),
    ]


def check_login_allowed(login: str, ip: str) -> int | None:
    """Seconds to wait before another attempt, or None when one may be made now."""
    strategy = limiter.limiter
    waits = []
    for item, *ids in _keys(login, ip):
        if not strategy.test(item, *ids):
            reset, _remaining = strategy.get_window_stats(item, *ids)
            waits.append(max(1, int(reset - time.time())))
    return max(waits) if waits else None


def record_login_failure(login: str, ip: str) -> None:
    for item, *ids in _keys(login, ip):
        limiter.limiter.hit(item, *ids)


def record_login_success(login: str, ip: str) -> None:
    """Success does not wipe the per-account count: it would reset an ongoing guess run."""


def verify_totp_or_recovery(user: User, code: str) -> bool:
    """A current TOTP code not used before (replay refused via ``totp_last_step``)."""
    if not user.totp_secret or not code or not code.isdigit() or len(code) != 6:
        return False
    totp = pyotp.TOTP(user.totp_secret)
    now_step = totp.timecode(datetime.now(UTC))
    for step in (now_step - 1, now_step, now_step + 1):
        if pyotp.utils.strings_equal(totp.generate_otp(step), code):
            if user.totp_last_step is not None and step <= user.totp_last_step:
                return False
            user.totp_last_step = step
            db.session.commit()
            return True
    return False
