"""Login throttling and second-factor checks used by ``POST /auth/token`` and token creation.

The API signs in through the very functions the web login uses (``bastion.auth.throttle``
and ``bastion.auth.twofactor``): one failure counter per account and per address, shared by
both channels, and one TOTP check that reads the encrypted secret and refuses replays. A
guess spent on the web is a guess spent on the API, and the other way round (ASVS V6.3.4).
"""

from __future__ import annotations

import math

from bastion.auth import throttle
from bastion.auth.twofactor import verify_totp_or_recovery

__all__ = ["check_login_allowed", "record_login_failure", "record_login_success",
           "verify_totp_or_recovery"]


def check_login_allowed(login: str, ip: str) -> int | None:
    """Whole seconds to wait (for ``Retry-After``), or None when an attempt may go ahead."""
    wait = throttle.check_login_allowed(login, ip)
    return max(1, math.ceil(wait)) if wait else None


def record_login_failure(login: str, ip: str) -> None:
    throttle.record_login_failure(login, ip)


def record_login_success(login: str, ip: str) -> None:
    throttle.record_login_success(login, ip)
