"""Object-level authorization: the one place that says who may touch what.

Pages and the API both ask these predicates (and ``require``) before every read and write
of an article or comment, so a rule is never written twice. Flask-Principal permissions
express the role needs; the object checks add ownership.
"""

from __future__ import annotations

from typing import Protocol, TypeGuard

from flask import abort
from flask_principal import Permission, RoleNeed

from bastion.models import Article, Comment, User

admin_permission = Permission(RoleNeed("admin"))
editor_permission = Permission(RoleNeed("editor"))


class Actor(Protocol):
    id: int

    def has_role(self, name: str) -> bool: ...


def _is_user(actor: object) -> TypeGuard[User]:
    return isinstance(actor, User) and actor.is_active


def can_read_article(actor: object, article: Article) -> bool:
    if article.is_published:
        return True
    # Drafts: their author and admins only.
    return _is_user(actor) and (article.author_id == actor.id or actor.has_role("admin"))


def can_create_article(actor: object) -> bool:
    return _is_user(actor) and actor.has_role("editor")


def can_edit_article(actor: object, article: Article) -> bool:
    if not _is_user(actor):
        return False
    if actor.has_role("admin"):
        return True
    return actor.has_role("editor") and article.author_id == actor.id


can_delete_article = can_edit_article


def can_comment(actor: object, article: Article) -> bool:
    return _is_user(actor) and article.is_published


def can_edit_comment(actor: object, comment: Comment) -> bool:
    """Authors edit their own; admins may edit any (SPEC role table)."""
    if not _is_user(actor):
        return False
    return comment.author_id == actor.id or actor.has_role("admin")


def can_delete_comment(actor: object, comment: Comment) -> bool:
    """Authors delete their own; editors and admins moderate."""
    if not _is_user(actor):
        return False
    return comment.author_id == actor.id or actor.has_role("editor")


def require(allowed: bool, *, hide: bool = False) -> None:
    """Abort unless allowed; ``hide`` answers 404 so private objects are not revealed."""
    if not allowed:
        from bastion.security import audit

        audit.record("authz.denied", details={"hidden": hide})
        abort(404 if hide else 403)
