"""Comments on articles, through the site's comment services and rules."""

from __future__ import annotations

from flask import abort

from bastion.api import bp
from bastion.api.articles import load_article, token_may_read
from bastion.api.auth import current_principal, may_act_on_others
from bastion.api.schemas import CommentCreate, CommentList, CommentOut, PageQuery
from bastion.api.spec import check_preconditions, operation
from bastion.api.users import author_out
from bastion.content import services
from bastion.content.write_limits import COMMENT_WRITES, limited_by
from bastion.models import Comment
from bastion.security import authz
from bastion.security.access import bearer_required


def comment_out(comment: Comment) -> CommentOut:
    return CommentOut(
        id=comment.id,
        article_id=comment.article_id,
        body=comment.body,
        created_at=comment.created_at,
        edited_at=comment.edited_at,
        author=author_out(comment.author),
    )


@bp.get("/articles/<int:article_id>/comments")
@bearer_required
@operation(
    summary="Comments on an article, oldest first",
    tag="comments",
    scopes=("articles:read",),
    query=PageQuery,
    response=CommentList,
)
def list_comments(article_id: int, query: PageQuery) -> CommentList:
    page = services.page_of_comments(load_article(article_id), query.page, query.per_page)
    return CommentList.of(page, comment_out)


@bp.post("/articles/<int:article_id>/comments")
@bearer_required
@operation(
    summary="Comment on a published article",
    tag="comments",
    scopes=("comments:write",),
    body=CommentCreate,
    response=CommentOut,
    status=201,
    location=("api.delete_comment", "comment_id"),
)
@limited_by(COMMENT_WRITES)
def create_comment(article_id: int, body: CommentCreate) -> CommentOut:
    article = load_article(article_id)
    if not article.is_published:
        # The caller may see the draft (its author, an admin): the service's refusal is a
        # bare 403, which sent them looking at their token's scopes instead.
        authz.record_denial(hide=False, what=f"comment on article {article_id}")
        abort(403, description="Only published articles take comments; this one is a draft.")
    check_preconditions()  # the comment list carries no ETag
    principal = current_principal()
    return comment_out(services.add_comment(principal.user, article, body.body,
                                            still_signed_in=principal.still_signed_in))


@bp.delete("/comments/<int:comment_id>")
@bearer_required
@operation(
    summary="Delete your comment (admins: any comment, with the 'admin' scope)",
    tag="comments",
    scopes=("comments:write",),
    status=204,
)
def delete_comment(comment_id: int) -> None:
    principal = current_principal()
    user = principal.user
    comment = services.get_comment(comment_id)
    # An orphan (its article gone where the database does not cascade) is absent too, and so
    # is a comment on a draft the token may not read (the same rule as ``load_article``).
    article = comment.article if comment is not None else None
    if article is not None and not token_may_read(user, article):
        authz.record_denial(hide=True, what=f"delete comment {comment_id}")
        article = None
    if comment is None or article is None:
        abort(404, description="There is no comment with that id.")
    if comment.author_id != user.id and not may_act_on_others():
        authz.record_denial(hide=False, what=f"delete comment {comment_id}")
        abort(403, description="Deleting other people's comments needs the 'admin' scope.")
    check_preconditions()  # a comment carries no ETag
    services.delete_comment(user, comment, still_signed_in=principal.still_signed_in)
