"""Changes a signed-in user makes to their own account."""

from __future__ import annotations

from urllib.parse import unquote

from flask import current_app, url_for
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from bastion.admin.deletion import Deletion
from bastion.auth import links, mail_budget
from bastion.auth.login import Step, confirm_password
from bastion.auth.services import (
    AccountError,
    canonical_email,
    email_spellings,
    email_taken,
    new_password_hash,
    replace_password_hash,
)
from bastion.auth.sessions import revoke_all
from bastion.extensions import db
from bastion.mail import send_mail
from bastion.models import User, utcnow
from bastion.models.base import affected_rows
from bastion.security import audit

ADDRESS_TAKEN = "That email address is now used by another account."
CURRENT_NOT_RIGHT = "Your current password is not right."
CHANGED_MEANWHILE = "Your account changed while this was being asked for. Ask again."
CURRENT_CHANGED_MEANWHILE = (
    "Your password was changed while this was being saved, so nothing was changed. "
    "Sign in with the new password."
)


class TooManyPasswordGuessesError(AccountError):
    """Too many wrong current passwords for this account or address: wait ``wait`` s."""

    def __init__(self, wait: float) -> None:
        super().__init__("Too many wrong attempts.", "current")
        self.wait = wait


def change_password(user: User, current: str, new: str, *, ip: str = "") -> None:
    """Needs the current password; ends every session of the user, the caller's too (a
    browser that stays signed in gets a new session from the view).

    The current password is checked like a sign-in (``confirm_password``): whoever holds
    a fresh session cookie but not the password must not get a faster way to guess it.
    """
    checked = confirm_password(user, current, ip)
    if checked.step is Step.THROTTLED:
        raise TooManyPasswordGuessesError(checked.wait)
    if checked.step is not Step.SIGNED_IN:
        raise AccountError(CURRENT_NOT_RIGHT, "current")
    checked_hash = user.password_hash  # what the current password was checked against
    password_hash = new_password_hash(user, new)  # slow: before the row lock
    # A reset (or another change) committed since the check: the current password is no
    # longer the account's, and whoever still knew the old one must not undo the reset.
    if not replace_password_hash(user, checked_hash, password_hash):
        db.session.rollback()
        raise AccountError(CURRENT_CHANGED_MEANWHILE, "current")
    revoke_all(user.id, commit=False)
    audit.record("password.changed", actor_id=user.id, target_user_id=user.id, commit=False)
    db.session.commit()
    send_mail(user.email, "Your password was changed", "password_changed", user=user,
              reset_url=url_for("auth.reset_request", _external=True))


def request_email_change(user: User, new_email: str, *, ip: str = "") -> None:
    """Mail a confirmation link to the new address and a notice to the old one.

    A taken address gets the same answer and the same notice to the old address (only the
    link is not sent, though built all the same so the reply takes as long), so neither
    the page, its timing nor one's own inbox can probe for accounts. The new address is
    typed by whoever holds the session, so its messages count against ``mail_budget``.
    An address held only by an account never confirmed is not taken: see
    ``_release_from_unconfirmed``.

    A new request supersedes every earlier one: the account's stamp is renewed first, so
    the links already mailed (to a mistyped address, say, which its holder could otherwise
    still confirm after the owner asked for the right one) die; so does any other emailed
    link of the account, which only its signed-in owner can have asked for anew.
    """
    new = canonical_email(new_email)
    if user.email in email_spellings(new_email):
        raise AccountError("That is already your email address.", "email")
    # Compare-and-set, as for a link: of two requests at once only one link stays alive.
    if not links.claim(user):
        db.session.rollback()
        raise AccountError(CHANGED_MEANWHILE, "email")
    audit.record("email.change_requested", actor_id=user.id, target_user_id=user.id)
    free, within_budget = not _held_by_confirmed(new, user.id), mail_budget.allows(new, ip)
    token = links.make_token("email_change", user, new=new)
    send_mail(new, "Confirm your new email address", "email_change",
              deliver=free and within_budget, user=user,
              url=url_for("account.confirm_email", token=token, _external=True),
              hours=current_app.config["EMAIL_CHANGE_HOURS"])
    send_mail(user.email, "Your email address is being changed", "email_change_notice",
              user=user, new_email=new, reset_url=url_for("auth.reset_request", _external=True))


def _held_by_confirmed(address: str, user_id: int) -> bool:
    """Whether another account that confirmed it holds ``address`` (in any spelling)."""
    return db.session.scalar(
        select(User.id).where(User.email.in_(email_spellings(address)), User.id != user_id,
                              User.email_confirmed_at.is_not(None)).limit(1)
    ) is not None


def _release_from_unconfirmed(address: str, keeper_id: int) -> None:
    """Delete the accounts holding ``address`` (in any spelling) if they were never
    confirmed (not committed).

    Whoever opens an email-change link has just shown they read that mailbox. An account
    started with the address and never confirmed showed nothing, cannot sign in and owns
    nothing; left alone, anyone could keep an address from its owner by signing up with it.
    The DELETE is conditional, so an account confirmed meanwhile keeps its address (and
    the change is refused as taken).
    """
    holders = db.session.execute(
        select(User.id, User.email).where(User.email.in_(email_spellings(address)),
                                          User.id != keeper_id,
                                          User.email_confirmed_at.is_(None))
    ).all()
    for holder in holders:
        released = affected_rows(db.session.execute(
            delete(User)
            .where(User.id == holder.id, User.email == holder.email,
                   User.email_confirmed_at.is_(None))
            .execution_options(synchronize_session=False)
        ))
        if released:
            audit.record("account.unconfirmed_released", actor_id=keeper_id,
                         target_user_id=holder.id, commit=False)


def email_change_target(token: str) -> tuple[User, str] | None:
    found = links.read_token("email_change", token, current_app.config["EMAIL_CHANGE_HOURS"] * 3600)
    if found is None or not isinstance(found[1].get("new"), str):
        return None
    # Canonical already, but for a link mailed before domains were stored in IDNA ASCII.
    return found[0], canonical_email(found[1]["new"])


def confirm_email_change(token: str) -> User | None:
    """Apply a confirmed change; None when the link is dead.

    The link is claimed with the change (``links.claim``), so it works once even when
    posted twice at once (the second finds the address changed: a dead link, not "taken").
    Another account holding the address by now, or taking it in the same instant, is found
    by the unique index: a message rather than an error.
    """
    target = email_change_target(token)
    if target is None:
        return None
    user, new = target
    _release_from_unconfirmed(new, user.id)
    # The usual case answered without a failed statement in the database's log; the unique
    # index still decides a race. The user's own row does not count: a racing twin of this
    # request may have just changed it, and this one should find a dead link, not "taken".
    if email_taken(new, by_other_than=user.id):
        db.session.rollback()
        raise AccountError(ADDRESS_TAKEN, "email")
    old = user.email
    try:
        claimed = links.claim(user, email=new, email_confirmed_at=utcnow())
    except IntegrityError:
        db.session.rollback()
        raise AccountError(ADDRESS_TAKEN, "email") from None
    if not claimed:
        db.session.rollback()
        return None
    audit.record("email.changed", actor_id=user.id, target_user_id=user.id,
                 details={"old_domain": old.rsplit("@", 1)[-1]}, commit=False)
    db.session.commit()
    # The old address was told of the request; it is told of the change too, once it is
    # made: the last mail it gets for the account.
    send_mail(old, "Your email address was changed", "email_changed", user=user, new_email=new)
    return user


def notify_deleted(done: Deletion) -> None:
    """Tell the deleted account's address, once the deletion committed, what went and when.

    Deleting needs only a session re-authenticated minutes ago: one stolen with the password
    would otherwise take the account without its owner ever hearing of it. The mail holds
    no link (there is no account left to act on, and a link is what a phisher's copy would
    hold); whom to tell is the site's security contact, written out as text.
    """
    send_mail(done.email, "Your account was deleted", "account_deleted",
              username=done.username, summary=done.summary,
              deleted_at=f"{utcnow():%d %b %Y at %H:%M} UTC",
              contact=contact_text(str(current_app.config.get("SECURITY_CONTACT") or "")))


def contact_text(uri: str) -> str:
    """``BASTION_SECURITY_CONTACT`` as a reader types it: the address of a ``mailto:`` or
    the number of a ``tel:`` (percent-decoded, without the URI's query), a web address as
    it is; empty when none is set."""
    scheme, _, rest = uri.partition(":")
    if scheme in ("mailto", "tel"):
        return unquote(rest.partition("?")[0])
    return uri
