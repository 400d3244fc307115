"""Registration, email confirmation and password reset.

Answers never reveal whether an email address has an account: registering a taken address
mails its owner a notice instead, and a reset request for an unknown address renders the
same message (never sent) and gives the same reply. Messages to a typed address are
limited per mailbox and client (``mail_budget``), the same way whether or not it has an
account.

Nor does what a sign-up leaves behind. One with a free address starts an account, which
holds its username; one with a taken address starts none, so its username is held for it
(``_hold_username``) for as long: until the confirmation link would have expired, after
which an account still never confirmed gives its username up (``_release_stale_username``).
Otherwise signing up again with the same username and an address of one's own would tell
("That username is taken." or a new account) whether the first address was free. The hold is
a key in the rate limiter's store and a ``revoked_tokens`` row (``hold:`` and a hash of the
username, until the hold would end), read when the store has none: Redis keeps nothing
across a restart (the deployments run it without persistence) and a flush empties it, and
neither may free the username of every sign-up that a prober made with a taken address.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta

from flask import current_app, url_for
from limits import RateLimitItem, RateLimitItemPerHour
from sqlalchemy import ColumnElement, and_, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm.attributes import set_committed_value

from bastion.auth import links, mail_budget
from bastion.auth.services import (
    USERNAME_TAKEN,
    AccountError,
    canonical_email,
    canonical_username,
    check_new_account,
    create_user,
    email_taken,
    find_user_by_email,
    new_password_hash,
    store_password_hash,
)
from bastion.auth.sessions import revoke_all
from bastion.extensions import db, limiter
from bastion.mail import send_mail
from bastion.models import RevokedToken, User, utcnow
from bastion.models.base import affected_rows
from bastion.security import audit
from bastion.security.passwords import dummy_verify
from bastion.security.tokens import keyed_digest

log = logging.getLogger("bastion.auth")


def register(username: str, email: str, password: str, *, ip: str = "") -> User | None:
    """Create an unconfirmed viewer and mail the link; None when the email is taken.

    Every input rule is checked first, so a taken address gets the same errors as a free
    one. A taken address whose account was never confirmed gets a link to choose that
    account's password, never its old confirmation link: someone else may have started it
    with this address and a password of their own, waiting for the real owner to confirm
    it for them (account pre-hijacking).
    """
    _release_stale_username(username)
    check_new_account(username, email, password)
    if _username_held(username):  # where check_new_account says a username is taken
        raise AccountError(USERNAME_TAKEN, "username")
    # Spent by every sign-up, so both answers cost the same. A new account's confirmation
    # to its mailbox's own address goes out anyway: it goes out once, the address being
    # taken from then on, and someone who first asked for resets before having an account
    # must not be left without it. One to a +tag address heeds the budget, or every new tag
    # would mail the same mailbox once more.
    address = canonical_email(email)
    within_budget = mail_budget.allows(address, ip)
    if email_taken(email):
        # Same work as a real sign-up (one hash), and the owner learns someone tried.
        dummy_verify(password)
        _hold_username(username)  # as the account a free address starts holds it
        _answer_taken(email, deliver=within_budget)
        return None
    try:
        user = create_user(username, email, password)
    except AccountError as exc:
        if exc.field != "email":
            raise
        _hold_username(username)
        _answer_taken(email, deliver=within_budget)  # another sign-up took it a moment ago
        return None
    audit.record("register", actor_id=user.id, target_user_id=user.id)
    send_confirmation(user, deliver=within_budget or mail_budget.is_own_mailbox(address))
    return user


def _hold_item() -> RateLimitItem:
    """One sign-up per username for as long as a confirmation link lives."""
    return RateLimitItemPerHour(1, int(current_app.config["CONFIRM_HOURS"]))


def _hold_key(username: str) -> list[str]:
    name = keyed_digest(b"username-held\0", canonical_username(username))[:32]
    return [str(current_app.config["RATELIMIT_KEY_PREFIX"]), "username-held", name]


def _hold_row_key(username: str) -> str:
    # A plain hash, not keyed: it must still match after a SECRET_KEY rotation.
    return "hold:" + hashlib.sha256(canonical_username(username).encode()).hexdigest()[:32]


def _hold_username(username: str) -> None:
    """Keep ``username`` from other sign-ups until a confirmation link mailed now would
    expire: in the rate limiter's store (Redis in production) and, in the sign-up's
    transaction, in the database."""
    if limiter.enabled:
        try:
            limiter.limiter.hit(_hold_item(), *_hold_key(username))
        except Exception:  # the store failed: the row holds it, and the sign-up is answered
            log.warning("username hold store failed; the database row answers", exc_info=True)
    now = utcnow()
    until = now + timedelta(hours=int(current_app.config["CONFIRM_HOURS"]))
    # Such sign-ups are rare, so each one also sweeps rows that no longer matter.
    db.session.execute(delete(RevokedToken).where(RevokedToken.expires_at <= now))
    # Race-free: two such sign-ups with one username at once must not fail on the key.
    insert = pg_insert if db.session.get_bind().dialect.name == "postgresql" else sqlite_insert
    db.session.execute(
        insert(RevokedToken)
        .values(key=_hold_row_key(username), expires_at=until)
        .on_conflict_do_nothing(index_elements=[RevokedToken.key])
    )


def _username_held(username: str) -> bool:
    """Whether a sign-up with a taken address holds ``username`` (``_hold_username``): the
    store says so, or else a live row does (the store forgot it, or failed)."""
    if limiter.enabled:
        try:
            if not limiter.limiter.test(_hold_item(), *_hold_key(username)):
                return True
        except Exception:
            log.warning("username hold store failed; the database row answers", exc_info=True)
    found = db.session.scalar(
        select(RevokedToken.key)
        .where(RevokedToken.key == _hold_row_key(username), RevokedToken.expires_at > utcnow())
    )
    return found is not None


def _release_stale_username(username: str) -> None:
    """Delete the account holding ``username`` if it was never confirmed and its
    confirmation link has expired, as ``users purge-unconfirmed`` would: it must hold the
    name no longer than ``_hold_username`` holds that of a sign-up with a taken address.
    Conditional, so an account confirmed meanwhile (by a reset link) stays."""
    name = canonical_username(username)
    if "\x00" in name:  # PostgreSQL refuses NUL in text; the form refuses it anyway
        return
    stale = _unconfirmed_before(utcnow() - timedelta(hours=current_app.config["CONFIRM_HOURS"]))
    holder = db.session.scalar(select(User.id).where(User.username == name, stale))
    if holder is None:
        return
    released = affected_rows(db.session.execute(
        delete(User).where(User.id == holder, stale).execution_options(synchronize_session=False)
    ))
    if released:
        audit.record("account.unconfirmed_released", target_user_id=holder,
                     details={"by": "sign-up"}, commit=False)
    db.session.commit()


def _answer_taken(email: str, *, deliver: bool) -> None:
    """Mail the owner of a taken address (never its old confirmation link) and audit it.

    A disabled account is mailed nothing, as a reset request mails it nothing: the notice
    offers a sign-in and a reset that cannot work, and the link to choose the password of
    one never confirmed is dead (links die with the account). The message is still built.
    """
    owner = find_user_by_email(email)
    deliver = deliver and (owner is None or owner.is_active)
    if owner is not None and owner.email_confirmed_at is None:
        # The confirmation link mailed when it was started dies too (links carry the
        # stamp): in the same mailbox, it would confirm the starter's password.
        owner.security_stamp = secrets.token_hex(16)
        db.session.commit()
        send_mail(owner.email, "Finish creating your account", "account_unconfirmed",
                  deliver=deliver, user=owner, minutes=current_app.config["RESET_MINUTES"],
                  url=url_for("auth.reset_password", token=links.make_token("reset", owner),
                              _external=True))
    elif owner is not None:
        send_mail(owner.email, "Someone tried to register with your email", "account_exists",
                  deliver=deliver, user=owner, reset_url=url_for("auth.reset_request", _external=True))
    audit.record("register.duplicate_email", target_user_id=owner.id if owner else None)


def send_confirmation(user: User, *, deliver: bool = True) -> None:
    token = links.make_token("confirm", user)
    send_mail(user.email, "Confirm your email address", "confirm", deliver=deliver, user=user,
              url=url_for("auth.confirm", token=token, _external=True),
              hours=current_app.config["CONFIRM_HOURS"])


def confirmation_user(token: str) -> User | None:
    found = links.read_token("confirm", token, current_app.config["CONFIRM_HOURS"] * 3600)
    return found[0] if found else None


def confirm(token: str) -> User | None:
    """Confirm the address of a valid link; the user, or None for a dead link.

    A conditional UPDATE, so of two requests confirming at once only one changes the row and
    is audited; the other answers as a later click on the same link would.
    """
    user = confirmation_user(token)
    if user is None or user.email_confirmed_at is not None:
        return user
    now = utcnow()
    confirmed = affected_rows(db.session.execute(
        update(User)
        .where(links.unchanged(user), User.email_confirmed_at.is_(None))
        .values(email_confirmed_at=now)
        .execution_options(synchronize_session=False, user_state_neutral=True)
    ))
    if confirmed != 1:
        db.session.rollback()
        return confirmation_user(token)  # read again: confirmed meanwhile, or the link died
    set_committed_value(user, "email_confirmed_at", now)
    audit.record("email.confirmed", actor_id=user.id, target_user_id=user.id, commit=False)
    db.session.commit()
    return user


def request_reset(email: str, *, ip: str = "") -> None:
    """Mail a reset link if an active account has this address; silent otherwise.

    Silent the slow way: an unknown address gets its message built for a stand-in account
    and dropped, so the reply takes as long as one that mails a link.
    """
    address = canonical_email(email)
    # Spent for every address, known or not, and by its canonical spelling: another
    # spelling of the same mailbox is no fresh allowance.
    within_budget = mail_budget.allows(address, ip, reset=True)
    user = find_user_by_email(email)
    known = user is not None and user.is_active
    recipient = user if known and user is not None else _stand_in(address)
    # To the address the account holds, not the spelling typed.
    send_mail(recipient.email, "Reset your password", "reset", deliver=known and within_budget,
              user=recipient,
              url=url_for("auth.reset_password", token=links.make_token("reset", recipient),
                          _external=True),
              minutes=current_app.config["RESET_MINUTES"])
    if not known:
        audit.record("password.reset_requested", details={"known": False})
        return
    audit.record("password.reset_requested", target_user_id=recipient.id,
                 details={"known": True, "mailed": within_budget})


def _stand_in(address: str) -> User:
    """An account never stored, for the reset message an unknown address gets built."""
    return User(id=0, username="member", email=address, password_changed_at=utcnow(),
                security_stamp=secrets.token_hex(16))


def reset_user(token: str) -> User | None:
    found = links.read_token("reset", token, current_app.config["RESET_MINUTES"] * 60)
    return found[0] if found else None


def reset_password(token: str, password: str) -> User | None:
    """Set a new password from a valid link. Never signs in and leaves 2FA as it is.

    The link is claimed (``links.claim``) before anything is stored, so it works once even
    when posted twice at once: the second request gets None, as for any used link. Every
    session of the account ends, in case the reset was prompted by someone else using it.
    """
    user = reset_user(token)
    if user is None:
        return None
    password_hash = new_password_hash(user, password)  # raises AccountError, nothing stored
    if not links.claim(user):
        db.session.rollback()
        return None
    store_password_hash(user, password_hash)
    if user.email_confirmed_at is None:
        # The link reached this mailbox, and the password is now the mailbox owner's.
        user.email_confirmed_at = utcnow()
        audit.record("email.confirmed", actor_id=user.id, target_user_id=user.id,
                     details={"by": "reset"}, commit=False)
    revoke_all(user.id, commit=False)
    audit.record("password.reset", target_user_id=user.id, commit=False)
    db.session.commit()
    send_mail(user.email, "Your password was changed", "password_changed", user=user,
              reset_url=url_for("auth.reset_request", _external=True))
    return user


__all__ = ["AccountError", "confirm", "register", "request_reset", "reset_password"]


def _unconfirmed_before(cutoff: datetime) -> ColumnElement[bool]:
    return and_(User.email_confirmed_at.is_(None), User.created_at < cutoff)


def count_unconfirmed(older_than: timedelta) -> int:
    """How many accounts ``purge_unconfirmed`` would delete now."""
    stmt = select(func.count()).select_from(User).where(
        _unconfirmed_before(utcnow() - older_than))
    return int(db.session.scalar(stmt) or 0)


def purge_unconfirmed(older_than: timedelta, *, details: Mapping[str, object]) -> int:
    """Delete accounts never confirmed and started more than ``older_than`` ago; how many.

    Such an account cannot sign in and owns nothing, but it holds its address and its
    username, and sign-ups from many addresses could grow the table without end. Deleted
    in one conditional statement (an account confirmed meanwhile stays) and audited once.
    """
    purged = affected_rows(db.session.execute(
        delete(User)
        .where(_unconfirmed_before(utcnow() - older_than))
        .execution_options(synchronize_session=False)
    ))
    hours = older_than / timedelta(hours=1)
    audit.record("users.unconfirmed_purged",
                 details={**details, "count": purged, "older_than_hours": hours}, commit=False)
    db.session.commit()
    return purged
