"""``/me``: the caller's own account."""

from __future__ import annotations

from bastion.api import bp
from bastion.api.auth import ACCOUNT_SCOPE, current_principal
from bastion.api.schemas import AuthorOut, MeOut, MeUpdate
from bastion.api.spec import check_preconditions, operation
from bastion.models import User
from bastion.profiles.services import update_profile
from bastion.security.access import bearer_required


def me_out(user: User, scopes: frozenset[str]) -> MeOut:
    """The email address only to a sign-in's token (account scope): a personal access token
    made for a script that reads articles has no need of it, and leaking one such token
    should not leak the address its owner signs in and resets passwords with."""
    return MeOut(
        id=user.id,
        username=user.username,
        email=user.email if ACCOUNT_SCOPE in scopes else None,
        display_name=user.display_name,
        bio=user.bio,
        role=user.role_name,  # type: ignore[arg-type]
        has_2fa=user.has_2fa,
        created_at=user.created_at,
        scopes=sorted(scopes),
    )


def author_out(user: User) -> AuthorOut:
    """Public facts about another user: never their email address."""
    return AuthorOut(id=user.id, username=user.username, display_name=user.display_name)


@bp.get("/me")
@bearer_required
@operation(summary="The account the token belongs to", tag="users", scopes=(), response=MeOut)
def get_me() -> MeOut:
    principal = current_principal()
    return me_out(principal.user, principal.scopes)


@bp.patch("/me")
@bearer_required
@operation(
    summary="Change display name or bio (nothing else can be changed here)",
    description="A field omitted or null is left unchanged.",
    tag="users",
    scopes=(ACCOUNT_SCOPE,),
    body=MeUpdate,
    response=MeOut,
)
def update_me(body: MeUpdate) -> MeOut:
    """Validated by the profile service the account page's rules come from (one source)."""
    principal = current_principal()
    user = principal.user
    check_preconditions()  # /me carries no ETag: only "If-Match: *" can match
    user = update_profile(
        user,
        display_name=user.display_name if body.display_name is None else body.display_name,
        bio=user.bio if body.bio is None else body.bio,
    )
    return me_out(user, principal.scopes)
