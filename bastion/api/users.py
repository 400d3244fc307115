"""``/me``: the caller's own account."""

from __future__ import annotations

from bastion.api import bp
from bastion.api.auth import ACCOUNT_SCOPE, current_principal
from bastion.api.schemas import AuthorOut, MeOut, MeUpdate
from bastion.api.spec import operation
from bastion.content.services import ContentError
from bastion.extensions import db
from bastion.models import User
from bastion.security.access import bearer_required


def me_out(user: User, scopes: frozenset[str]) -> MeOut:
    return MeOut(
        id=user.id,
        username=user.username,
        email=user.email,
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


def update_profile(user: User, *, display_name: str | None, bio: str | None) -> User:
    """Only the profile text; role, email and the rest have their own guarded flows."""
    if display_name is not None:
        name = display_name.strip()
        if any(ch in name for ch in "\x00\r\n"):
            raise ContentError("Use a single line without control characters.", "display_name")
        user.display_name = name
    if bio is not None:
        if "\x00" in bio:
            raise ContentError("Must not contain NUL characters.", "bio")
        user.bio = bio
    db.session.commit()
    return user


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
    tag="users",
    scopes=(ACCOUNT_SCOPE,),
    body=MeUpdate,
    response=MeOut,
)
def update_me(body: MeUpdate) -> MeOut:
    principal = current_principal()
    user = update_profile(principal.user, display_name=body.display_name, bio=body.bio)
    return me_out(user, principal.scopes)
