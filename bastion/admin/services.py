"""User management by admins: roles, disabling, signing out everywhere.

Each change is audited in the same transaction as the change itself, and the last active
admin can never be demoted or disabled (the site would have no one left to run it).
"""

from __future__ import annotations

from sqlalchemy import func, or_, select

from bastion.auth.sessions import revoke_all
from bastion.content.services import Page, escape_like
from bastion.extensions import db
from bastion.models import ROLE_NAMES, Role, User, utcnow
from bastion.security import audit

SEARCH_MAX = 100
PAGE_MAX = 10_000


class AdminError(ValueError):
    """A refused admin action; the message is safe to show."""


def search_users(query: str = "", *, page: int = 1, per_page: int = 25) -> Page:
    """Users whose username, email or display name contains ``query`` (wildcards literal)."""
    page = min(max(1, int(page)), PAGE_MAX)
    stmt = select(User)
    query = (query or "").replace("\x00", "").strip()[:SEARCH_MAX]
    if query:
        pattern = f"%{escape_like(query.lower())}%"
        stmt = stmt.where(
            or_(
                User.username.like(pattern, escape="\\"),
                User.email.like(pattern, escape="\\"),
                User.display_name.ilike(pattern, escape="\\"),
            )
        )
    total = db.session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    items = db.session.scalars(
        stmt.order_by(User.username).limit(per_page).offset((page - 1) * per_page)
    ).all()
    return Page(items=list(items), page=page, per_page=per_page, total=total)


def get_user(user_id: int) -> User | None:
    if not 0 < user_id <= 2**31 - 1:  # beyond the column range: no such user, not a 500
        return None
    return db.session.get(User, user_id)


def _other_active_admins(user: User) -> int:
    """Active admins besides ``user``; rows are locked on PostgreSQL so two admins cannot
    demote each other at the same moment and leave none."""
    ids = db.session.scalars(
        select(User.id)
        .join(Role, User.role_id == Role.id)
        .where(Role.name == "admin", User.disabled_at.is_(None), User.id != user.id)
        .with_for_update(of=User)
    ).all()
    return len(ids)


def _guard_last_admin(user: User, action: str) -> None:
    if user.is_admin and user.is_active and _other_active_admins(user) == 0:
        raise AdminError(f"{user.username} is the last active admin and cannot be {action}.")


def set_role(actor: User, user: User, role_name: str) -> User:
    """Change a user's role; demoting the last active admin is refused."""
    if role_name not in ROLE_NAMES:
        raise AdminError("Choose one of: " + ", ".join(ROLE_NAMES) + ".")
    old = user.role_name
    if old == role_name:
        return user
    if old == "admin":
        _guard_last_admin(user, "demoted")
    role = db.session.scalar(select(Role).where(Role.name == role_name))
    if role is None:
        raise AdminError("That role does not exist.")
    user.role = role
    audit.record(
        "user.role_changed",
        actor_id=actor.id,
        target_user_id=user.id,
        details={"from": old, "to": role_name},
        commit=False,
    )
    db.session.commit()
    return user


def _end_everything(user: User) -> int:
    """End every session and API token of ``user`` (not committed)."""
    return revoke_all(user.id, commit=False)


def set_disabled(actor: User, user: User, disabled: bool) -> User:
    """Disable (ending all sessions and refresh tokens at once) or re-enable an account."""
    if disabled == (user.disabled_at is not None):
        return user
    if disabled:
        if user.id == actor.id:
            raise AdminError("You cannot disable your own account.")
        _guard_last_admin(user, "disabled")
        user.disabled_at = utcnow()
        ended = _end_everything(user)
        details = {"sessions_ended": ended}
    else:
        user.disabled_at = None
        details = {}
    audit.record(
        "user.disabled" if disabled else "user.enabled",
        actor_id=actor.id,
        target_user_id=user.id,
        details=details,
        commit=False,
    )
    db.session.commit()
    return user


def sign_out_everywhere(actor: User, user: User) -> int:
    """End all of a user's sessions and refresh tokens; returns the sessions ended."""
    ended = _end_everything(user)
    audit.record(
        "user.signed_out_everywhere",
        actor_id=actor.id,
        target_user_id=user.id,
        details={"sessions_ended": ended},
        commit=False,
    )
    db.session.commit()
    return ended
