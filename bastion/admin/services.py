"""User management: roles, disabling, signing out everywhere, resetting a lost second factor.

The one implementation of these rules, called by the admin pages and by the
``flask users``/``sessions`` commands (``actor=None`` there: an operator at the console);
deleting an account is ``bastion.admin.deletion``, on the same locks and helpers.
Each change is audited in the same transaction as the change itself, and the last active
admin can never be demoted, disabled or deleted (the site would have no one left to run it).
"""

from __future__ import annotations

import getpass
import os
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NoReturn

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import load_only

from bastion import pagecache
from bastion.admin import demotion
from bastion.api import pats, tokens
from bastion.auth import enrolment, twofactor
from bastion.auth.services import canonical_email, canonical_username
from bastion.auth.sessions import end_browser_sessions, revoke_all
from bastion.content.services import BIDI_CONTROLS, Page, escape_like
from bastion.extensions import db
from bastion.mail import send_mail, site_url
from bastion.models import ROLE_NAMES, Role, User, utcnow
from bastion.models.base import ID_MAX
from bastion.models.locks import lock_user
from bastion.models.user import ROLE_RANK
from bastion.security import audit, authz

SEARCH_MAX = 100
PAGE_MAX = 10_000
# How the person was identified before their second factor is reset: long enough to say
# something ("video call, passport checked"), short enough to stay a note.
REASON_MIN, REASON_MAX = 10, 500


class AdminError(ValueError):
    """A refused admin action; the message is safe to show (``field``: the form field)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class UserGoneError(AdminError):
    """The account no longer exists (deleted by someone else meanwhile)."""


USER_GONE = "There is no user with that id; it was deleted meanwhile."


class TargetChangedError(AdminError):
    """The id in the URL now names another account than the page showed (SQLite gives a
    deleted account's id to the next one registered)."""


def target_changed(named: str, user_id: int) -> str:
    return (f"This page was for {named}, but user {user_id} is now another account; nothing "
            "was changed. Reload the users list and try again.")


def search_users(query: str = "", *, page: int = 1, per_page: int = 25) -> Page:
    """Users whose username, email or display name contains ``query`` (wildcards literal)."""
    page = min(max(1, int(page)), PAGE_MAX)
    stmt = select(User)
    query = (query or "").replace("\x00", "").strip()[:SEARCH_MAX]
    if query:
        pattern = f"%{escape_like(query.lower())}%"
        matches = [
            User.username.like(pattern, escape="\\"),
            User.email.like(pattern, escape="\\"),
            User.display_name.ilike(pattern, escape="\\"),
        ]
        if ace := _ace_spelling(query):
            matches.append(User.email.like(f"%{escape_like(ace)}%", escape="\\"))
        stmt = stmt.where(or_(*matches))
    total = db.session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    items = db.session.scalars(
        stmt.options(_LISTED_USER)
        .order_by(User.username)
        .limit(per_page)
        .offset((page - 1) * per_page)
    ).all()
    return Page(items=list(items), page=page, per_page=per_page, total=total)


# What the users table shows (name, email, role, status, confirmation, 2FA): a page of 25
# rows need not carry 25 password hashes, TOTP secrets and bios (up to 2,000 characters
# each). A column the page reads and this leaves out is loaded row by row.
_LISTED_USER = load_only(
    User.id, User.username, User.email, User.display_name, User.role_id, User.disabled_at,
    User.email_confirmed_at, User.totp_enabled_at,
)


def _ace_spelling(query: str) -> str | None:
    """``query`` with its Unicode domain labels in IDNA ASCII, as addresses are stored
    (``canonical_email``), when it reads as a domain or an address; else None.

    Label by label, so that part of a domain (``bücher``, ``bücher.``, ``@bücher``) is
    found too. None when a label is one IDNA refuses (a space in it, say).
    """
    if query.isascii():
        return None
    typed = unicodedata.normalize("NFKC", query).strip().lower()
    local, at, domain = typed.rpartition("@")
    labels = [
        label if label.isascii() else canonical_email(f"x@{label}").removeprefix("x@")
        for label in domain.split(".")
    ]
    if not all(label.isascii() for label in labels):
        return None  # no stored address has that domain: the forms refuse it
    ace = local + at + ".".join(labels)
    return ace if ace != typed else None


def get_user(user_id: int) -> User | None:
    if not 0 < user_id <= ID_MAX:  # beyond the column range: no such user, not a 500
        return None
    return db.session.get(User, user_id)


def lock_admins() -> None:
    """Serialise every change that could end the last active admin, until commit.

    Locking the other admins' rows is not enough: two admins demoting each other lock
    disjoint rows, both count one other admin, and (PostgreSQL) deadlock or (SQLite, which
    ignores FOR UPDATE) both win. A no-op write on the admin role row is one lock for all:
    a row lock on PostgreSQL, the database's write lock on SQLite.
    """
    db.session.execute(
        update(Role)
        .where(Role.name == "admin")
        .values(description=Role.description)
        .execution_options(synchronize_session=False, user_state_neutral=True)
    )


def count_other_active_admins(user: User) -> int:
    """Active admins besides ``user``, as of now: for telling the admin, not for deciding.

    Active means able to sign in: not disabled, and the address confirmed. An admin promoted
    before confirming cannot sign in (and may be purged unconfirmed), so counting one let the
    last admin who could be demoted or disabled, leaving nobody to administer the site.
    """
    return db.session.scalar(
        select(func.count(User.id))
        .join(Role, User.role_id == Role.id)
        .where(
            Role.name == "admin",
            User.disabled_at.is_(None),
            User.email_confirmed_at.is_not(None),
            User.id != user.id,
        )
    ) or 0


def _other_active_admins(user: User) -> int:
    """Active admins besides ``user``, counted under the admins' lock (held until commit)."""
    lock_admins()
    return count_other_active_admins(user)


NO_LONGER_ADMIN = "Your account can no longer manage users."
SIGNED_OUT = "You were signed out meanwhile, so nothing was changed. Sign in again."


def still_active_admin(actor_id: int) -> bool:
    """Whether the acting admin still is one, as committed now (read under the admins' lock)."""
    return db.session.scalar(
        select(User.id)
        .join(Role, User.role_id == Role.id)
        .where(User.id == actor_id, Role.name == "admin", User.disabled_at.is_(None))
    ) is not None


def refuse_audited(what: str, message: str) -> NoReturn:
    """Roll back (releasing any lock) and refuse, audited as ``authz.denied`` like any refused
    permission (``what``: the action and the account, ``role user 7``).

    For refusals no page of the site leads to (the forms offer no such choice), so a request
    that meets one was made by hand or by a script, which the trail should show.
    """
    db.session.rollback()
    authz.record_denial(hide=False, what=what)
    raise AdminError(message)


def refuse_former_admin(what: str) -> NoReturn:
    """Refuse an actor who is no longer an active admin, audited (``refuse_audited``):
    queued behind the demotion or disabling of a stolen admin account, such a request was
    otherwise refused without a trace."""
    refuse_audited(what, NO_LONGER_ADMIN)


def refuse_stale_actor(
    actor: User | None, still_signed_in: Callable[[], bool] | None = None, *, what: str
) -> None:
    """Refuse (rolling back, so the lock goes) an actor who is no longer an active admin,
    or whose sign-in ended meanwhile.

    The request passed ``admin_required`` on the copy it loaded at its start; an admin
    demoted or disabled by another admin since then changes no one (a request of theirs
    queued on the lock could promote them back). Nor does one whose sessions another admin
    ended (a stolen cookie): queued on the lock behind that very "sign out everywhere", it
    went on once it committed. ``still_signed_in`` reads the actor's sign-in again (the
    pages pass ``bastion.auth.sessions.current_record_live``). Call it under the admins'
    lock; the console (None) is trusted.
    """
    if actor is None:
        return
    if still_signed_in is not None and not still_signed_in():
        db.session.rollback()
        raise AdminError(SIGNED_OUT)
    if not still_active_admin(actor.id):
        refuse_former_admin(what)


def _reread_under_lock(user: User, named: str | None = None) -> None:
    """Take the admins' lock, then read ``user`` again (UserGoneError if deleted since;
    TargetChangedError if ``named``, the username the admin's page showed, is not theirs).

    The caller loaded ``user`` earlier: checked on that copy, a promotion committed since
    (with the old admin demoted meanwhile) went unseen and the new last admin could be
    disabled or demoted, leaving no active admin. Deleted since (deletions take the same
    lock), the refresh or the update failed with a 500 instead of saying so.
    """
    lock_admins()
    # And the user's own lock: changes the account makes to itself (a profile's display
    # name, a personal token's scopes) judged on its role are then either seen or wait.
    lock_user(user.id)
    if db.session.scalar(select(User.id).where(User.id == user.id)) is None:
        db.session.rollback()
        raise UserGoneError(USER_GONE)
    db.session.refresh(user)
    if named is not None and named != user.username:
        db.session.rollback()
        raise TargetChangedError(target_changed(named, user.id))


def guard_last_admin(user: User, action: str) -> None:
    if user.is_admin and user.is_active and _other_active_admins(user) == 0:
        raise AdminError(f"{user.username} is the last active admin and cannot be {action}.")


def audit_actor_id(actor: User | None) -> int | None:
    return actor.id if actor is not None else None


def console_operator() -> dict[str, str]:
    """Who ran a command, for its audit event's details: the console has no site account
    (``actor_id`` stays empty), so the trail names the system account, and who used sudo."""
    try:
        who = getpass.getuser()
    except (KeyError, OSError):  # a uid without a passwd entry, as in many containers
        who = f"uid {os.getuid()}"
    if sudo := os.environ.get("SUDO_USER"):
        who = f"{sudo} (sudo to {who})"
    return {"via": "cli", "operator": who[:100]}


def event_details(actor: User | None, details: Mapping[str, object]) -> dict[str, object]:
    return dict(details) if actor is not None else {**details, **console_operator()}


NO_SUCH_ROLE = "Choose one of: " + ", ".join(ROLE_NAMES) + "."


def set_role(actor: User | None, user: User, role_name: str, *,
             still_signed_in: Callable[[], bool] | None = None, named: str | None = None) -> User:
    """Change a user's role; demoting the last active admin is refused.

    A promotion ends every browser session and API sign-in of the user (OWASP: a new
    session at each change of privilege): each was started under the lower role, maybe
    without the second factor the new one requires, maybe by someone who stole a viewer's
    cookie, and would otherwise carry the new powers at once. They sign in again, with the
    second factor or into enrolment. Personal access tokens stay: their scopes were capped
    by the role that made them, and a role requiring 2FA refuses them until enrolment.

    A demotion revokes the personal access tokens with scopes the new role cannot grant
    (``tokens_revoked`` in the event: filtered on use, they came back whole with a later
    promotion) and drops a display name only admins may carry (``display_name_cleared``,
    the name). ``named``: the username the admin's page showed (``_reread_under_lock``).
    """
    if role_name not in ROLE_NAMES:
        if actor is None:  # the console's own usage error
            raise AdminError(NO_SUCH_ROLE)
        refuse_audited(f"role user {user.id}", NO_SUCH_ROLE)  # no form offers one
    _reread_under_lock(user, named)
    old = user.role_name
    if old == role_name:
        db.session.commit()  # nothing to change: let go of the lock
        return user
    if old == "admin":
        guard_last_admin(user, "demoted")
    role = db.session.scalar(select(Role).where(Role.name == role_name))
    if role is None:
        raise AdminError("That role does not exist.")
    refuse_stale_actor(actor, still_signed_in, what=f"role user {user.id}")
    user.role = role
    details: dict[str, object] = {"from": old, "to": role_name}
    cleared = None
    if is_promotion(old, role_name):
        end_sign_ins(user.id)
    else:
        details["tokens_revoked"] = demotion.revoke_tokens_beyond(user.id, role_name)
        if (cleared := demotion.clear_staff_name(user)) is not None:
            details["display_name_cleared"] = cleared
    audit.record(
        "user.role_changed",
        actor_id=audit_actor_id(actor),
        target_user_id=user.id,
        details=event_details(actor, details),
        commit=False,
    )
    db.session.commit()
    if cleared is not None:
        pagecache.clear()  # the profile and bylines this worker kept with the old name
    return user


PROMOTION_SIGNS_OUT = "Their sessions ended: they sign in again under the new role."


def role_changed_text(username: str, role: str) -> str:
    """"ada is now an editor.": one wording for the admin page and the command line."""
    article = "an" if role[:1] in "aeiou" else "a"
    return f"{username} is now {article} {role}."


def is_promotion(old: str, new: str) -> bool:
    """Whether moving from role ``old`` to ``new`` raises privilege (and so ends sign-ins)."""
    return ROLE_RANK.get(new, -1) > ROLE_RANK.get(old, len(ROLE_RANK))


def is_demotion(old: str, new: str) -> bool:
    """Whether moving from role ``old`` to ``new`` lowers privilege."""
    return ROLE_RANK.get(old, -1) > ROLE_RANK.get(new, len(ROLE_RANK))


def end_sign_ins(user_id: int) -> int:
    """End a user's browser sessions (remember-me included) and API refresh families, in
    the caller's transaction; their personal access tokens stay. Returns the sessions ended."""
    lock_user(user_id)
    ended = end_browser_sessions(user_id)
    tokens.revoke_all_for_user(user_id, commit=False)
    return ended


OWN_DISABLING = "You cannot disable your own account."


def set_disabled(actor: User | None, user: User, disabled: bool, *,
                 still_signed_in: Callable[[], bool] | None = None,
                 named: str | None = None) -> User:
    """Disable (ending all sessions and refresh tokens at once) or re-enable an account.

    Disabling takes the public profile down: this worker's anonymous copies of it (name,
    bio, photo link) go with the commit, as for an unpublished article, not seconds later.
    Disabling one's own account is refused and audited: the users list offers no such button.
    """
    _reread_under_lock(user, named)
    if disabled == (user.disabled_at is not None):
        db.session.commit()  # nothing to change: let go of the lock
        return user
    if disabled:
        if actor is not None and user.id == actor.id:
            refuse_audited(f"disable user {user.id}", OWN_DISABLING)
        guard_last_admin(user, "disabled")
        refuse_stale_actor(actor, still_signed_in, what=f"disable user {user.id}")
        user.disabled_at = utcnow()
        ended = revoke_all(user.id, commit=False)
        details = {"sessions_ended": ended}
    else:
        refuse_stale_actor(actor, still_signed_in, what=f"enable user {user.id}")
        user.disabled_at = None
        details = {}
    audit.record(
        "user.disabled" if disabled else "user.enabled",
        actor_id=audit_actor_id(actor),
        target_user_id=user.id,
        details=event_details(actor, details),
        commit=False,
    )
    db.session.commit()
    if disabled:
        pagecache.clear()
    return user


def sign_out_everywhere(actor: User | None, user: User, *,
                        still_signed_in: Callable[[], bool] | None = None,
                        named: str | None = None) -> int:
    """End all of a user's sessions and refresh tokens; returns the sessions ended."""
    _reread_under_lock(user, named)
    refuse_stale_actor(actor, still_signed_in, what=f"sign-out user {user.id}")
    ended = revoke_all(user.id, commit=False)
    audit.record(
        "user.signed_out_everywhere",
        actor_id=audit_actor_id(actor),
        target_user_id=user.id,
        details=event_details(actor, {"sessions_ended": ended}),
        commit=False,
    )
    db.session.commit()
    return ended


@dataclass(frozen=True)
class TwoFactorReset:
    sessions_ended: int
    tokens_revoked: int


def two_factor_reset_refusal(actor: User | None, user: User) -> str | None:
    """Why ``actor`` may not reset the second factor of ``user``, or None when they may."""
    if actor is not None and actor.id == user.id:
        # Proofing one's own identity proves nothing; another admin has to do it.
        return ("You cannot reset your own two-factor authentication. Use a recovery code, "
                "or ask another admin to verify you and reset it.")
    if not user.has_2fa:
        return f"{user.username} has no two-factor authentication to reset."
    return None


def clean_reason(reason: str, ask: str = "Say how you verified the person") -> str:
    """``reason`` on one line, or AdminError (``ask`` begins its message)."""
    text = " ".join(reason.split())  # one line in the audit trail and the mail
    # Bidi controls too: the reason is mailed to the user and shown in the audit trail,
    # where they would make it read as something else.
    if any(unicodedata.category(c) == "Cc" or c in BIDI_CONTROLS for c in text):
        raise AdminError("The reason contains characters that are not allowed.", "reason")
    if not REASON_MIN <= len(text) <= REASON_MAX:
        raise AdminError(
            f"{ask}, in {REASON_MIN} to {REASON_MAX} characters.",
            "reason",
        )
    return text


def reset_two_factor(
    actor: User | None, user: User, *, confirmation: str, reason: str,
    still_signed_in: Callable[[], bool] | None = None,
) -> TwoFactorReset:
    """Remove a lost second factor once the person was verified out of band (ASVS V6.4.4).

    ``confirmation`` is the target's username, typed again; ``reason`` says how their identity
    was checked. The TOTP secret and recovery codes go, and so does every session, refresh
    token and personal access token, so whoever holds the lost device or a signed-in browser
    is locked out. The user signs in with their password and, when the role requires 2FA,
    must enrol again before anything else. Audited with the reason; the user is told by mail.
    """
    _reread_under_lock(user)  # a second admin's reset meanwhile: nothing left to reset
    if problem := two_factor_reset_refusal(actor, user):
        db.session.rollback()
        raise AdminError(problem)
    if canonical_username(confirmation) != user.username:
        raise AdminError(f"Type the username {user.username} to confirm.", "confirm")
    reason = clean_reason(reason)
    refuse_stale_actor(actor, still_signed_in, what=f"2fa-reset user {user.id}")
    twofactor.clear(user)
    revoked = pats.revoke_all_for(user.id, commit=False)  # counted here; revoke_all ends them too
    ended = revoke_all(user.id, commit=False)
    audit.record(
        "user.2fa_reset",
        actor_id=audit_actor_id(actor),
        target_user_id=user.id,
        details=event_details(
            actor, {"reason": reason, "sessions_ended": ended, "tokens_revoked": revoked}
        ),
        commit=False,
    )
    db.session.commit()
    reset_url = site_url("auth.reset_request")  # None on the command line without PUBLIC_URL
    send_mail(user.email, "Your two-factor authentication was reset", "two_factor_reset",
              user=user, reason=reason, must_enrol=enrolment.is_required(user),
              reset_url=reset_url)
    return TwoFactorReset(sessions_ended=ended, tokens_revoked=revoked)
