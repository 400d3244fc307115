"""TOTP second factor and single-use recovery codes.

The TOTP secret is encrypted at rest with Fernet (AES-128-CBC + HMAC, authenticated) under a
key derived from SECRET_KEY with HKDF: a database dump alone does not let anyone mint codes,
and no second secret needs managing.

Key rotation: a secret is opened under SECRET_KEY, then under each of SECRET_KEY_FALLBACKS,
so moving the old key there keeps every second factor working. A secret opened with an old
key is sealed again under the current one as soon as its owner proves a code (in the same
transaction that spends the code), and ``reseal_all`` does the rest, so the fallback can be
dropped. Recovery codes are stored only as keyed digests and match under any of those keys;
they cannot be recomputed, so an old key must stay a fallback while codes made under it are
still needed; each code names its key (``recovery_keys``), so that is known
(docs/authentication.md).

Replay: the time step of every accepted code is stored (``totp_last_step``) and codes at or
below it are refused, with a conditional UPDATE so two simultaneous uses cannot both win.
"""

from __future__ import annotations

import base64
import hmac
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

import pyotp
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app
from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm.attributes import set_committed_value

from bastion.auth import recovery_keys
from bastion.extensions import db
from bastion.mail import send_mail, site_url
from bastion.models import RecoveryCode, User, utcnow
from bastion.models.base import affected_rows
from bastion.models.locks import lock_user
from bastion.security import audit
from bastion.security.tokens import keyed_digest, keyed_digests, secret_keys

ISSUER = "Bastion"
RECOVERY_CODE_COUNT = 10
VALID_WINDOW = 1  # accept the previous and next 30 s step, for clock drift
RESEAL_BATCH = 500  # accounts per transaction in reseal_all


def _fernet(secret_key: str | None = None) -> Fernet:
    """The Fernet of one SECRET_KEY value (the current key when none is given). Derived at
    each use, never cached: HKDF costs about 10 us, and a cache could outlive a key change."""
    if secret_key is None:
        secret_key = str(current_app.config["SECRET_KEY"])
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"bastion totp secret v1"
    ).derive(secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(key))


def _fernets() -> list[Fernet]:
    """The current key's Fernet first (the one that seals), then each fallback's."""
    return [_fernet(str(key)) for key in secret_keys()]


def _open(sealed: str) -> tuple[str, bool] | None:
    """The secret, and whether the current key sealed it; None when no key opens it (the
    secret was sealed under a key that is no longer configured)."""
    current, *fallbacks = _fernets()
    try:
        return current.decrypt(sealed.encode()).decode(), True
    except InvalidToken:
        pass
    if not fallbacks:
        return None
    try:
        return MultiFernet(fallbacks).decrypt(sealed.encode()).decode(), False
    except InvalidToken:
        return None


def _secret_of(user: User) -> str | None:
    opened = _open(user.totp_secret) if user.totp_secret else None
    return opened[0] if opened else None


def _reseal(user_id: int, sealed: str) -> str | None:
    """Seal the secret stored as ``sealed`` under the current key, in the caller's
    transaction; the new value, or None when the stored secret is no longer ``sealed``
    (replaced or cleared meanwhile: that change must not be undone)."""
    resealed = MultiFernet(_fernets()).rotate(sealed.encode()).decode()
    moved = affected_rows(db.session.execute(
        update(User)
        .where(User.id == user_id, User.totp_secret == sealed)
        .values(totp_secret=resealed)
        .execution_options(synchronize_session=False, user_state_neutral=True)
    ))
    return resealed if moved == 1 else None


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
    sealed = _fernets()[0].encrypt(secret.encode()).decode()
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
    return _enrolment_marks(secret)[0]


def _enrolment_marks(secret: str) -> list[str]:
    """The mark under the current key, then under each fallback: a session shown the
    secret before a key rotation can still enrol it."""
    return [digest[:32] for digest in keyed_digests(b"totp-enrolment:", secret)]


def is_shown_secret(user: User, mark: object) -> bool:
    """Whether ``mark`` (kept by one session) names the user's pending secret.

    A secret shown to another session (a borrowed or stolen one) must never be enrolled:
    whoever saw it there would hold the owner's second factor.
    """
    secret = None if user.has_2fa else _secret_of(user)
    if secret is None or not isinstance(mark, str):
        return False
    return any(hmac.compare_digest(mark, known) for known in _enrolment_marks(secret))


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


def _proved_step(sealed: str | None, code: str) -> tuple[int, bool] | None:
    """The time step ``code`` proves for the secret stored as ``sealed``, and whether the
    current key sealed it; None when it proves none. Nothing is recorded."""
    code = "".join(code.split())
    opened = _open(sealed) if sealed else None
    # isascii: str.isdigit() also accepts Arabic-Indic or superscript digits; no TOTP has them.
    if opened is None or len(code) != 6 or not (code.isascii() and code.isdigit()):
        return None
    secret, sealed_now = opened
    step = _matching_step(secret, code, utcnow())
    return None if step is None else (step, sealed_now)


def _claim_step(user_id: int, step: int) -> bool:
    """Record ``step`` as used, in the caller's transaction; False when it, or a later
    one, was used already (conditional, so of two uses at once only one wins)."""
    return affected_rows(db.session.execute(
        update(User)
        .where(User.id == user_id)
        .where(or_(User.totp_last_step.is_(None), User.totp_last_step < step))
        .values(totp_last_step=step)
        .execution_options(synchronize_session=False, user_state_neutral=True)
    )) == 1


def verify_totp(user: User, code: str) -> bool:
    """True once per time step: a code that was accepted before is refused.

    A secret that only a fallback key opens is sealed again under the current key in the
    transaction that spends the code.
    """
    sealed = user.totp_secret
    proved = _proved_step(sealed, code)
    if proved is None:
        return False
    step, sealed_now = proved
    claimed = _claim_step(user.id, step)
    resealed = _reseal(user.id, sealed) if claimed and not sealed_now and sealed else None
    db.session.commit()
    if claimed:
        set_committed_value(user, "totp_last_step", step)
    if resealed is not None:
        set_committed_value(user, "totp_secret", resealed)
    return claimed


# Key rotation --------------------------------------------------------------------------
@dataclass
class ResealReport:
    """What ``reseal_all`` found: secrets sealed again, already current, changed while it
    ran (a new enrolment or 2FA turned off, which leave nothing under an old key), and the
    accounts whose secret no configured key opens (left as they are)."""

    resealed: int = 0
    current: int = 0
    changed: int = 0
    unreadable: list[int] = field(default_factory=list)


def reseal_all(batch_size: int = RESEAL_BATCH) -> ResealReport:
    """Seal every stored TOTP secret (enabled or pending) under the current key, so the
    old key can leave SECRET_KEY_FALLBACKS without taking anyone's second factor with it.

    One transaction per batch, so no lock covers the whole table; running it again
    changes nothing. A secret no key opens is not touched: it is reported, since only
    restoring the old key as a fallback (or a 2FA reset) helps its owner.
    """
    report = ResealReport()
    for batch in _sealed_secrets(batch_size):
        for user_id, sealed in batch:
            opened = _open(sealed)
            if opened is None:
                report.unreadable.append(user_id)
            elif opened[1]:
                report.current += 1
            elif _reseal(user_id, sealed) is not None:
                report.resealed += 1
            else:
                report.changed += 1
        db.session.commit()
    return report


def _sealed_secrets(batch_size: int) -> Iterator[list[tuple[int, str]]]:
    """(user id, sealed secret) of every user with a secret, by id, ``batch_size`` at a time
    (keyset pagination: rows resealed meanwhile are neither skipped nor read twice)."""
    after = 0
    while True:
        rows = db.session.execute(
            select(User.id, User.totp_secret)
            .where(User.id > after, User.totp_secret.is_not(None))
            .order_by(User.id)
            .limit(batch_size)
        ).all()
        if not rows:
            return
        yield [(row.id, str(row.totp_secret)) for row in rows]
        after = rows[-1].id


# Recovery codes ------------------------------------------------------------------------
def _normalise_code(code: str) -> str:
    return "".join(ch for ch in code.upper() if ch.isalnum())


def _code_hash(code: str) -> str:
    """Codes carry 120 random bits, so a keyed SHA-256 is as safe as a slow hash here."""
    return keyed_digest(b"recovery:", _normalise_code(code))


def _code_hashes(code: str) -> list[str]:
    """The digest of ``code`` under the current key and each fallback: codes made before a
    key rotation still match, and cannot be re-hashed (only their digests are stored)."""
    return keyed_digests(b"recovery:", _normalise_code(code))


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
    made_by = recovery_keys.current_key_id()
    db.session.add_all(
        RecoveryCode(user_id=user.id, code_hash=_code_hash(c), key_id=made_by) for c in codes
    )
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
    digests = _code_hashes(code)
    used = affected_rows(db.session.execute(
        update(RecoveryCode)
        .where(
            RecoveryCode.user_id == user.id,
            RecoveryCode.code_hash.in_(digests),
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=utcnow())
    ))
    if used == 1:
        recovery_keys.name_unrecorded_set(user.id, digests)
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
def enable(user: User, code: str, *, keep_session_id: int | None = None) -> list[str] | None:
    """Turn 2FA on once the app proves it has the secret; returns the recovery codes.

    For a role that requires 2FA, every other browser session of the user ends: each was
    signed in with the password alone and held back at enrolment, and would otherwise open
    the role's pages without the second factor as soon as it is on (a session left waiting
    by whoever knew the password). ``keep_session_id`` is the enrolling browser's.
    """
    sealed = user.totp_secret
    proved = None if user.has_2fa else _proved_step(sealed, code)
    if proved is None or sealed is None:
        return None
    step, sealed_now = proved
    # Codes of two adjacent time steps both pass: two requests at once (two tabs, a double
    # click) would each enable and each show a set of recovery codes, one of them already
    # replaced. The row lock makes the second find 2FA on and stop. And a setup page opened
    # meanwhile (maybe by another session) may have replaced the secret the code proved:
    # enabling then would turn on a secret the owner's app does not hold. The step is
    # spent only under the lock, once both checks passed, in the transaction that enables:
    # a request that loses spends nothing, so the owner's next code is not refused as a
    # replay of a code that enabled nothing.
    lock_user(user.id)
    enabled_at, stored = db.session.execute(
        select(User.totp_enabled_at, User.totp_secret).where(User.id == user.id)
    ).one()
    if enabled_at is not None or stored != sealed or not _claim_step(user.id, step):
        db.session.rollback()
        return None
    # Sealed again under the current key when only a fallback key opened it.
    resealed = None if sealed_now else _reseal(user.id, sealed)
    user.totp_enabled_at = utcnow()
    codes = new_recovery_codes(user)
    from bastion.auth.enrolment import is_required
    from bastion.auth.sessions import end_browser_sessions

    details: dict[str, object] = {}
    if is_required(user):
        details["sessions_ended"] = end_browser_sessions(user.id, keep_id=keep_session_id)
    audit.record("2fa.enabled", actor_id=user.id, target_user_id=user.id, details=details,
                 commit=False)
    db.session.commit()
    set_committed_value(user, "totp_last_step", step)
    if resealed is not None:
        set_committed_value(user, "totp_secret", resealed)
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
