"""TOTP second factor and single-use recovery codes.

The TOTP secret is encrypted at rest with Fernet (AES-128-CBC + HMAC, authenticated) under a
key derived from SECRET_KEY with HKDF: a database dump alone does not let anyone mint codes,
and no second secret needs managing. Rotating SECRET_KEY therefore requires re-enrolment.

Replay: the time step of every accepted code is stored (``totp_last_step``) and codes at or
below it are refused, with a conditional UPDATE so two simultaneous uses cannot both win.
"""

from __future__ import annotations

import base64
import hmac
import secrets
from datetime import datetime

import pyotp
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app
from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm.attributes import set_committed_value

from bastion.extensions import db
from bastion.mail import send_mail, site_url
from bastion.models import RecoveryCode, User, utcnow
from bastion.models.base import affected_rows
from bastion.models.locks import lock_user
from bastion.security import audit
from bastion.security.tokens import keyed_digest

ISSUER = "Bastion"
RECOVERY_CODE_COUNT = 10
VALID_WINDOW = 1  # accept the previous and next 30 s step, for clock drift


def _fernet() -> Fernet:
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"bastion totp secret v1"
    ).derive(str(current_app.config["SECRET_KEY"]).encode())
    return Fernet(base64.urlsafe_b64encode(key))


def _secret_of(user: User) -> str | None:
    if not user.totp_secret:
        return None
    try:
        return _fernet().decrypt(user.totp_secret.encode()).decode()
    except InvalidToken:
        return None


def pending_secret(user: User, *, renew: bool = False) -> str | None:
    """The secret being enrolled: created once, kept until enabled or ``renew`` is asked;
    None when 2FA is on.

    A new secret is stored only while 2FA is off in the database, not in the copy loaded
    with the request: an enrolment committed meanwhile (another tab, another session)
    would otherwise have its enabled secret replaced by one shown here.
    """
    secret = _secret_of(user)
    if not (renew or secret is None or user.has_2fa):
        return secret
    secret = pyotp.random_base32()
    sealed = _fernet().encrypt(secret.encode()).decode()
    stored = affected_rows(db.session.execute(
        update(User)
        .where(User.id == user.id, User.totp_enabled_at.is_(None))
        .values(totp_secret=sealed, totp_last_step=None)
        .execution_options(synchronize_session=False, user_state_neutral=True)
    ))
    db.session.commit()
    if stored != 1:
        return None
    set_committed_value(user, "totp_secret", sealed)
    set_committed_value(user, "totp_last_step", None)
    return secret


def enrolment_mark(secret: str) -> str:
    """Names a pending secret, without revealing it, in the session that was shown it."""
    return keyed_digest(b"totp-enrolment:", secret)[:32]


def is_shown_secret(user: User, mark: object) -> bool:
    """Whether ``mark`` (kept by one session) names the user's pending secret.

    A secret shown to another session (a borrowed or stolen one) must never be enrolled:
    whoever saw it there would hold the owner's second factor.
    """
    secret = None if user.has_2fa else _secret_of(user)
    return (secret is not None and isinstance(mark, str)
            and hmac.compare_digest(mark, enrolment_mark(secret)))


def provisioning_uri(user: User, secret: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=user.username, issuer_name=ISSUER)


def qr_svg(uri: str) -> str:
    """Inline SVG (no script, no style attribute, no data: URL), so CSP stays strict."""
    import segno  # only enrolment draws QR codes; its writers cost ~60 ms at every start

    return str(
        segno.make(uri, error="m").svg_inline(
            scale=5, border=2, dark="#000", light="#fff", title="QR code for your authenticator app"
        )
    )


def _matching_step(secret: str, code: str, now: datetime) -> int | None:
    totp = pyotp.TOTP(secret)
    current = totp.timecode(now)
    for step in range(current - VALID_WINDOW, current + VALID_WINDOW + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def verify_totp(user: User, code: str) -> bool:
    """True once per time step: a code that was accepted before is refused."""
    code = "".join(code.split())
    secret = _secret_of(user)
    # isascii: str.isdigit() also accepts Arabic-Indic or superscript digits; no TOTP has them.
    if secret is None or len(code) != 6 or not (code.isascii() and code.isdigit()):
        return False
    step = _matching_step(secret, code, utcnow())
    if step is None:
        return False
    claimed = affected_rows(db.session.execute(
        update(User)
        .where(User.id == user.id)
        .where(or_(User.totp_last_step.is_(None), User.totp_last_step < step))
        .values(totp_last_step=step)
        .execution_options(synchronize_session=False, user_state_neutral=True)
    ))
    db.session.commit()
    if claimed == 1:
        set_committed_value(user, "totp_last_step", step)
    return claimed == 1


# Recovery codes ------------------------------------------------------------------------
def _normalise_code(code: str) -> str:
    return "".join(ch for ch in code.upper() if ch.isalnum())


def _code_hash(code: str) -> str:
    """Codes carry 120 random bits, so a keyed SHA-256 is as safe as a slow hash here."""
    return keyed_digest(b"recovery:", _normalise_code(code))


def _new_code() -> str:
    raw = base64.b32encode(secrets.token_bytes(15)).decode()  # 24 characters, 120 bits
    return "-".join(raw[i : i + 4] for i in range(0, 24, 4)).lower()


def new_recovery_codes(user: User) -> list[str]:
    """Replace the user's codes with 10 fresh ones; the caller shows them once."""
    codes = [_new_code() for _ in range(RECOVERY_CODE_COUNT)]
    # Two regenerations at once (two tabs): on PostgreSQL each DELETE missed the other's
    # uncommitted codes, and both sets stayed valid. Under the user's row lock the second
    # deletes the first's.
    lock_user(user.id)
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    db.session.add_all(RecoveryCode(user_id=user.id, code_hash=_code_hash(c)) for c in codes)
    return codes


def remaining_recovery_codes(user: User) -> int:
    return len(
        db.session.scalars(
            select(RecoveryCode.id).where(
                RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None)
            )
        ).all()
    )


def use_recovery_code(user: User, code: str) -> bool:
    if not 16 <= len(_normalise_code(code)) <= 40:
        return False
    used = affected_rows(db.session.execute(
        update(RecoveryCode)
        .where(
            RecoveryCode.user_id == user.id,
            RecoveryCode.code_hash == _code_hash(code),
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=utcnow())
    ))
    db.session.commit()
    if used == 1:
        audit.record("2fa.recovery_code_used", actor_id=user.id, target_user_id=user.id,
                     details={"remaining": remaining_recovery_codes(user)})
    return used == 1


def verify_totp_or_recovery(user: User, code: str) -> bool:
    """Second-factor check shared by the site and the API; replay-safe, consumes codes."""
    if not user.has_2fa or not isinstance(code, str) or len(code) > 64:
        return False
    compact = "".join(code.split())
    if compact.isascii() and compact.isdigit():
        return verify_totp(user, compact)
    return use_recovery_code(user, code)


# Enable / disable -----------------------------------------------------------------------
def enable(user: User, code: str) -> list[str] | None:
    """Turn 2FA on once the app proves it has the secret; returns the recovery codes."""
    sealed = user.totp_secret  # the secret the code is checked against, as stored
    if user.has_2fa or sealed is None or not verify_totp(user, code):
        return None
    # Codes of two adjacent time steps both pass verify_totp: two requests at once (two
    # tabs) would each enable and each show a set of recovery codes, one of them already
    # replaced. The row lock makes the second find 2FA on and stop. And a setup page opened
    # meanwhile (maybe by another session) may have replaced the secret the code proved:
    # enabling then would turn on a secret the owner's app does not hold.
    lock_user(user.id)
    enabled_at, stored = db.session.execute(
        select(User.totp_enabled_at, User.totp_secret).where(User.id == user.id)
    ).one()
    if enabled_at is not None or stored != sealed:
        db.session.rollback()
        return None
    user.totp_enabled_at = utcnow()
    codes = new_recovery_codes(user)
    audit.record("2fa.enabled", actor_id=user.id, target_user_id=user.id, commit=False)
    db.session.commit()
    _notify(user, "enabled")
    return codes


def clear(user: User) -> None:
    """Forget the secret, its replay marker and every recovery code; the caller commits."""
    user.totp_secret = None
    user.totp_enabled_at = None
    user.totp_last_step = None
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))


def disable(user: User) -> None:
    clear(user)
    from bastion.api.tokens import revoke_all_for_user
    from bastion.auth.enrolment import is_required

    if is_required(user):  # the role's API sign-ins were made with the factor: they end
        revoke_all_for_user(user.id, commit=False)
    audit.record("2fa.disabled", actor_id=user.id, target_user_id=user.id, commit=False)
    db.session.commit()
    _notify(user, "disabled")


def regenerate(user: User) -> list[str]:
    codes = new_recovery_codes(user)
    audit.record("2fa.recovery_codes_regenerated", actor_id=user.id, target_user_id=user.id,
                 commit=False)
    db.session.commit()
    _notify(user, "recovery_codes")
    return codes


_CHANGE_SUBJECTS = {
    "enabled": "Two-factor authentication was turned on",
    "disabled": "Two-factor authentication was turned off",
    "recovery_codes": "New recovery codes were made for your account",
}


def _notify(user: User, change: str) -> None:
    """Tell the owner by mail: a stolen session that is still fresh could otherwise turn
    the second factor off, take the recovery codes or enrol its own app, unnoticed."""
    reset_url = site_url("auth.reset_request")  # None on the command line without PUBLIC_URL
    send_mail(user.email, _CHANGE_SUBJECTS[change], "two_factor_changed", user=user,
              change=change, reset_url=reset_url)
