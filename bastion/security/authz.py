"""Object-level authorization: the one place that says who may touch what.

Pages and the API both ask these predicates (and ``require``) before every read and write
of an article or comment, so a rule is never written twice.

Rules are Flask-Principal permissions over needs: role needs (``RoleNeed("editor")``; roles
are ranked, so an admin also holds the editor and viewer needs) and object needs such as
``ItemNeed("edit", 7, "article")``, which an actor holds on the objects they own. Needs are
computed from the acting user given to the predicate rather than the request's identity,
so the same rule serves pages, the API and the command line.
"""

from __future__ import annotations

from typing import Protocol, TypeGuard

from flask import abort, has_app_context
from flask_principal import Identity, ItemNeed, Need, Permission, RoleNeed, UserNeed
from werkzeug.local import LocalProxy

from bastion.auth import enrolment
from bastion.models import Article, Comment, User
from bastion.models.user import ROLE_NAMES, ROLE_RANK

admin_permission = Permission(RoleNeed("admin"))
editor_permission = Permission(RoleNeed("editor"))


class Actor(Protocol):
    id: int

    def has_role(self, name: str) -> bool: ...


def _is_user(actor: object) -> TypeGuard[User]:
    return isinstance(actor, User) and actor.is_active and not _must_enrol(actor)


def _must_enrol(user: User) -> bool:
    """Whether the role requires a second factor the user has not set up yet.

    Such accounts hold no needs until they enrol: other pages send them to enrolment, but
    public pages (an article, an image) ask these rules directly, where the admin need would
    otherwise open every draft to whoever has only the password.
    """
    return not user.has_2fa and has_app_context() and enrolment.is_required(user)


def article_need(action: str, article_id: int) -> ItemNeed:
    return ItemNeed(action, article_id, "article")


def comment_need(action: str, comment_id: int) -> ItemNeed:
    return ItemNeed(action, comment_id, "comment")


def role_needs(user: User) -> set[Need]:
    """The user's own need and one role need per rank at or below their role."""
    needs: set[Need] = {UserNeed(user.id)}
    rank = ROLE_RANK.get(user.role_name, -1)
    needs.update(RoleNeed(name) for name in ROLE_NAMES[: rank + 1])
    return needs


def object_needs(user: User, obj: Article | Comment) -> set[Need]:
    """What owning ``obj`` grants: authors read their drafts; editors manage their articles;
    everyone edits and deletes their own comments."""
    if obj.author_id != user.id:
        return set()
    if isinstance(obj, Article):
        needs: set[Need] = {article_need("read", obj.id)}
        if user.has_role("editor"):
            needs |= {article_need("edit", obj.id), article_need("delete", obj.id)}
        return needs
    return {comment_need("edit", obj.id), comment_need("delete", obj.id)}


def _allows(actor: object, permission: Permission, obj: Article | Comment | None = None) -> bool:
    """Whether an active user's needs (roles, plus ownership of ``obj``) meet the permission."""
    # Callers often pass Flask-Login's ``current_user`` proxy; resolve it once here, or every
    # attribute read below is another context lookup (a page with 15 comments asks 30 times).
    if isinstance(actor, LocalProxy):
        actor = actor._get_current_object()
    if not _is_user(actor):
        return False
    identity = Identity(actor.id)
    identity.provides.update(role_needs(actor))
    if obj is not None:
        identity.provides.update(object_needs(actor, obj))
    return bool(permission.allows(identity))


def can_read_article(actor: object, article: Article) -> bool:
    if article.is_published:
        return True
    # Drafts: their author and admins only.
    return _allows(actor, Permission(RoleNeed("admin"), article_need("read", article.id)), article)


def can_create_article(actor: object) -> bool:
    return _allows(actor, editor_permission)


def can_edit_article(actor: object, article: Article) -> bool:
    return _allows(actor, Permission(RoleNeed("admin"), article_need("edit", article.id)), article)


def can_delete_article(actor: object, article: Article) -> bool:
    perm = Permission(RoleNeed("admin"), article_need("delete", article.id))
    return _allows(actor, perm, article)


def can_comment(actor: object, article: Article) -> bool:
    return article.is_published and _allows(actor, Permission(RoleNeed("viewer")))


def can_edit_comment(actor: object, comment: Comment) -> bool:
    """Authors edit their own; admins may edit any (SPEC role table)."""
    return _allows(actor, Permission(RoleNeed("admin"), comment_need("edit", comment.id)), comment)


def can_delete_comment(actor: object, comment: Comment) -> bool:
    """Authors delete their own; admins may delete any (SPEC role table).

    Neither editors nor the article's author may remove other people's comments.
    """
    perm = Permission(RoleNeed("admin"), comment_need("delete", comment.id))
    return _allows(actor, perm, comment)


def require(allowed: bool, *, hide: bool = False, what: str = "") -> None:
    """Abort unless allowed; ``hide`` answers 404 so private objects are not revealed.

    ``what`` names the object and action (``"edit article 7"``) for the audit trail.
    """
    if not allowed:
        record_denial(hide=hide, what=what)
        abort(404 if hide else 403)


def record_denial(*, hide: bool, what: str = "") -> None:
    """Audit a refusal (``authz.denied``); for callers that answer it themselves."""
    from bastion.security import audit

    details: dict[str, object] = {"hidden": hide}
    if what:
        details["what"] = what[:100]
    audit.record("authz.denied", details=details)
