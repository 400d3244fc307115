"""The password and second-factor steps of signing in, with throttling and audit."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from enum import Enum

from bastion.auth import pending, throttle, twofactor
from bastion.auth.services import authenticate, canonical_username, find_login_user
from bastion.models import User
from bastion.observability import counters
from bastion.security import audit
from bastion.security.tokens import keyed_digest, keyed_digests


class Step(Enum):
    THROTTLED = "throttled"
    FAILED = "failed"
    NEEDS_2FA = "needs_2fa"
    SIGNED_IN = "signed_in"
    SPENT = "spent"  # the pending-code marker finished a sign-in already


@dataclass(frozen=True)
class Result:
    step: Step
    user: User | None = None
    wait: float = 0.0


def who_tried(login: str, known: User | None) -> dict[str, str]:
    """How the trail names the account an attempt was made on (site and API alike).

    A known account by its username. Text that names no account is kept only as a keyed
    digest: people type their password into the username box, and the raw text would put
    it in the audit trail and the logs. The digest still groups repeated attempts at one
    name (credential stuffing) without revealing it.
    """
    if known is not None:
        return {"username": known.username}
    return {"unknown_login": keyed_digest(b"unknown-login:", canonical_username(login))[:16]}


def pending_mark(user: User) -> str:
    """Names the account's security stamp in the pending-code marker, without revealing it.

    Every step that ends all of an account's sign-ins (password change or reset, "sign out
    everywhere", disabling, a 2FA reset) renews the stamp. A marker, made when the password
    was right, must end with them: it is half a sign-in, and whoever phished the password
    could otherwise finish it with a code after the owner (or an admin) reacted.
    """
    return keyed_digest(b"pending-2fa:", user.security_stamp)[:32]


def pending_still_valid(user: User, mark: object) -> bool:
    """Whether a pending-code marker's ``mark`` still names the account's stamp (under
    SECRET_KEY or a fallback), and the account is active with 2FA on."""
    if not isinstance(mark, str) or not user.is_active or not user.has_2fa:
        return False
    return any(
        hmac.compare_digest(mark, digest[:32])
        for digest in keyed_digests(b"pending-2fa:", user.security_stamp)
    )


def pending_reused(user: User) -> None:
    """A pending-code marker that finished a sign-in already came back: a copied cookie,
    or two tabs sending the code at once."""
    audit.record("login.pending_reused", target_user_id=user.id)


def _throttled(login: str, ip: str, stage: str) -> Result | None:
    """Counts the attempt (before the hash runs) unless the throttle asks for a wait."""
    wait = throttle.reserve(login, ip)
    if wait is None:
        return None
    known = find_login_user(login)
    audit.record("login.throttled", target_user_id=known.id if known else None,
                 details={**who_tried(login, known), "wait": wait, "stage": stage})
    # Not counted here: the 429 the routes answer with is counted once by the metrics hook.
    return Result(Step.THROTTLED, wait=wait)


def _failed(login: str, ip: str, event: str, counter: str) -> Result:
    # The throttle counted this attempt when it began (``_throttled``).
    known = find_login_user(login)
    audit.record(event, target_user_id=known.id if known else None, details=who_tried(login, known))
    counters.increment(counter)
    return Result(Step.FAILED)


def password_step(login: str, password: str, ip: str) -> Result:
    """Check the password; a 2FA account then needs its code before any session starts."""
    if limited := _throttled(login, ip, "password"):
        return limited
    user = authenticate(login, password)
    if user is None:
        return _failed(login, ip, "login.failure", "login_failures")
    if user.has_2fa:
        throttle.refund(login, ip)  # the password was right; each code is counted in turn
        audit.record("login.password_ok", target_user_id=user.id)
        return Result(Step.NEEDS_2FA, user=user)
    throttle.record_login_success(login, ip)
    audit.record("login.success", actor_id=user.id, target_user_id=user.id,
                 details={"method": "password"})
    return Result(Step.SIGNED_IN, user=user)


def second_step(user: User, code: str, ip: str, nonce: object, expires_at: float) -> Result:
    """Check a TOTP or recovery code; failures count against the same throttle.

    A right code then spends the marker's ``nonce`` (``bastion.auth.pending``): a copy of
    the marker, or a second tab, must not finish a second sign-in. Claimed only after the
    code, so wrong codes can be retried on the same marker; a lost claim is no sign-in.
    """
    if limited := _throttled(user.username, ip, "2fa"):
        return limited
    if not user.is_active or not twofactor.verify_totp_or_recovery(user, code):
        return _failed(user.username, ip, "login.2fa_failure", "2fa_failures")
    if not pending.claim(nonce, expires_at):
        pending_reused(user)
        return Result(Step.SPENT)
    throttle.record_login_success(user.username, ip)
    audit.record("login.success", actor_id=user.id, target_user_id=user.id,
                 details={"method": "2fa"})
    return Result(Step.SIGNED_IN, user=user)


def confirm_second_factor(user: User, code: str, ip: str) -> Result:
    """A code from the app, or a recovery code, before 2FA is turned off or its recovery
    codes replaced: a session cookie, however fresh, is not the second factor. Wrong codes
    count against the same throttle as the sign-in's code step."""
    if limited := _throttled(user.username, ip, "2fa_change"):
        return limited
    if not twofactor.verify_totp_or_recovery(user, code):
        return _failed(user.username, ip, "2fa.change_failure", "2fa_failures")
    throttle.refund(user.username, ip)
    return Result(Step.SIGNED_IN, user=user)


def confirm_password(user: User, password: str, ip: str) -> Result:
    """The current password before a new one is set. Whoever holds a fresh session cookie
    but not the password could otherwise guess it here unthrottled and unaudited: each
    wrong one counts against the same throttle as the sign-in form."""
    if limited := _throttled(user.username, ip, "password_change"):
        return limited
    if authenticate(user.username, password) is None:
        return _failed(user.username, ip, "password.change_failure", "login_failures")
    throttle.refund(user.username, ip)
    return Result(Step.SIGNED_IN, user=user)


def reauthenticate(user: User, password: str, code: str, ip: str) -> Result:
    """Password (and code when 2FA is on) again, for sensitive actions."""
    if limited := _throttled(user.username, ip, "reauth"):
        return limited
    ok = authenticate(user.username, password) is not None
    if ok and user.has_2fa:
        ok = twofactor.verify_totp_or_recovery(user, code)
    if not ok:
        return _failed(user.username, ip, "reauth.failure", "login_failures")
    throttle.refund(user.username, ip)
    audit.record("reauth", actor_id=user.id, target_user_id=user.id)
    return Result(Step.SIGNED_IN, user=user)
