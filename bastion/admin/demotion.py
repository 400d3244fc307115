"""What a lowered role takes away at once, in the role change's own transaction.

Every request checks the current role, so most of what a demotion removes goes by itself.
Two things would outlast it: personal access tokens with scopes the new role cannot grant
(filtered on each use, they came back whole if the user was promoted again), and a display
name only an admin may carry (``profiles.services.staff_name_problem``), which went on
signing a former admin's articles as staff.
"""

from __future__ import annotations

from sqlalchemy import select, update

from bastion.api.pats import scopes_of_role
from bastion.extensions import db
from bastion.models import ApiToken, User, utcnow
from bastion.models.base import affected_rows
from bastion.profiles.services import staff_name_problem


def revoke_tokens_beyond(user_id: int, role_name: str) -> int:
    """Revoke the user's live personal access tokens holding any scope ``role_name`` cannot
    grant; returns how many. The caller audits (one event for the role change) and commits."""
    allowed = scopes_of_role(role_name)
    now = utcnow()
    live = db.session.execute(
        select(ApiToken.id, ApiToken.scopes).where(
            ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None), ApiToken.expires_at > now
        )
    ).all()
    beyond = [token_id for token_id, scopes in live if not set(scopes.split()) <= allowed]
    if not beyond:
        return 0
    return affected_rows(db.session.execute(
        update(ApiToken)
        .where(ApiToken.id.in_(beyond), ApiToken.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    ))


def clear_staff_name(user: User) -> str | None:
    """Drop a display name the user's (new) role may not carry, so the profile and bylines
    show the username instead; returns the name dropped, or None when it may stay.

    Not committed: the caller's role change commits it, and clears the page cache after.
    """
    name = user.display_name
    if not name or staff_name_problem(user, name) is None:
        return None
    user.display_name = ""
    return name
