"""Article and comment pages: validate a form, call one service, render or redirect."""

from __future__ import annotations

from typing import Literal

from flask import abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from markupsafe import Markup, escape
from werkzeug.exceptions import NotFound

from bastion.auth.forms import EmptyForm
from bastion.auth.sessions import current_record_live
from bastion.content import bp
from bastion.content import services as content
from bastion.content.forms import ArticleForm, CommentForm, add_service_error
from bastion.content.write_limits import ARTICLE_WRITES, COMMENT_WRITES, limited_by
from bastion.errors import handle_http_exception
from bastion.extensions import limiter
from bastion.models import Article, Comment
from bastion.pagecache import cached_public_page
from bastion.security import authz
from bastion.security.access import editor_required, login_required, public
from bastion.uploads.services import article_images

INVALID = 422  # a form with errors is re-shown with this status, so clients can tell
CONFLICT = 409  # an edit of a version someone else changed meanwhile, re-shown unsaved


@bp.app_template_filter("nl2br")
def nl2br(text: str) -> Markup:
    """Escape first, then keep line breaks: the only markup a comment can ever contain."""
    return escape(text).replace("\n", Markup("<br>\n"))


@bp.errorhandler(content.ContentNotFoundError)
def deleted_meanwhile(exc: content.ContentNotFoundError) -> ResponseReturnValue:
    """An article or comment deleted while the request acted on it: the site's 404 page,
    as for one that never existed."""
    return handle_http_exception(NotFound(description=exc.message))


def _readable_article(
    article_id: int, attempt: str = "", read_for: Literal["page", "editor"] | None = None
) -> Article:
    """``attempt`` names the change asked for, so a refusal on a hidden draft is audited;
    ``read_for`` the page that shows it (``content.get_article`` reads only what it shows)."""
    article = content.get_article(current_user, article_id, attempt=attempt, read_for=read_for)
    if article is None:
        abort(404, description="There is no article with that number, or it is not published.")
    return article


def _comment_in_readable_article(comment_id: int, attempt: str) -> Comment:
    """The comment unless its article is hidden (refusal audited) or gone (an orphan)."""
    comment = content.get_comment(comment_id)
    article = comment.article if comment is not None else None
    if article is not None and not authz.can_read_article(current_user, article):
        authz.record_denial(hide=True, what=f"{attempt} comment {comment_id}")
        article = None
    if comment is None or article is None:
        abort(404, description="There is no comment with that number.")
    return comment


@bp.get("/articles")
@public
def list_articles() -> ResponseReturnValue:
    # What was searched for, as the page repeats it (never a NUL or an unnormalised form).
    query = content.clean_query(request.args.get("q", "", type=str))
    # Two pagers, one page: ``page`` for the published articles, ``drafts_page`` for the
    # reader's own drafts. A number that is not one reads as 1; the services bound the rest.
    page = request.args.get("page", 1, type=int)
    results = content.list_articles(current_user, query=query, page=page)
    drafts_page = request.args.get("drafts_page", 1, type=int)
    drafts = None if query else content.list_drafts(current_user, drafts_page)
    return render_template("content/list.html", results=results, query=query, drafts=drafts)


@bp.route("/articles/new", methods=["GET", "POST"])
@editor_required
@limiter.limit("30 per hour", methods=["POST"])
@limited_by(ARTICLE_WRITES)
def new_article() -> ResponseReturnValue:
    form = ArticleForm()
    if form.validate_on_submit():
        try:
            article = content.create_article(
                current_user,
                title=form.title.data or "",
                body=form.body.data or "",
                publish=bool(form.publish.data),
                still_signed_in=current_record_live,
            )
        except content.ContentError as exc:
            add_service_error(form, exc)
        else:
            flash(
                "Your article is published." if article.is_published else "Draft saved.", "success"
            )
            return redirect(url_for("content.show_article", article_id=article.id))
    status = INVALID if form.errors else 200
    return render_template("content/edit.html", form=form, article=None), status


@bp.get("/articles/<int:article_id>")
@public
@cached_public_page  # anonymous readers: the same bytes for everyone, see bastion.pagecache
def show_article(article_id: int) -> ResponseReturnValue:
    article = _readable_article(article_id, read_for="page")
    return _render(article)


def _show(article: Article, comment_form: CommentForm, status: int = 200) -> ResponseReturnValue:
    return _render(article, comment_form), status


def _render(article: Article, comment_form: CommentForm | None = None) -> str:
    # Forms are made only for visitors who get them: making one creates a CSRF token in
    # the session, which would make an anonymous reader's page personal (and uncacheable).
    can_comment = authz.can_comment(current_user, article)
    if comment_form is None and can_comment:
        comment_form = CommentForm()
    return render_template(
        "content/show.html",
        article=article,
        comments=content.page_of_comments(article, request.args.get("page", 1, type=int)),
        comment_form=comment_form,
        action_form=EmptyForm() if current_user.is_authenticated else None,
        can_edit=authz.can_edit_article(current_user, article),
        can_comment=can_comment,
        can_edit_comment=lambda c: authz.can_edit_comment(current_user, c),
        can_delete_comment=lambda c: authz.can_delete_comment(current_user, c),
    )


def _saved_message(was_published: bool, is_published: bool) -> str:
    """Say what a save did to who can read the article, not only that it was saved."""
    if is_published and not was_published:
        return "Your article is published."
    if was_published and not is_published:
        return "The article is a draft again: only you and admins can see it."
    return "Your changes are saved."


@bp.route("/articles/<int:article_id>/edit", methods=["GET", "POST"])
@editor_required
@limited_by(ARTICLE_WRITES)
def edit_article(article_id: int) -> ResponseReturnValue:
    article = _readable_article(article_id, "edit", read_for="editor")
    authz.require(authz.can_edit_article(current_user, article), what=f"edit article {article_id}")
    form = ArticleForm(data=None if request.method == "POST" else _form_data(article))
    status = 200
    if form.validate_on_submit():
        was_published = article.is_published
        try:
            content.update_article(
                current_user,
                article,
                title=form.title.data or "",
                body=form.body.data or "",
                publish=bool(form.publish.data),
                expected_revision=form.revision.data or None,
                still_signed_in=current_record_live,
            )
        except content.EditConflictError as exc:
            # The editor's text stays in the form; saving it again now replaces the version
            # they were told about, deliberately.
            form.form_errors.append(str(exc))
            form.revision.data = content.revision(article)
            status = CONFLICT
        except content.ContentError as exc:
            add_service_error(form, exc)
        else:
            flash(_saved_message(was_published, article.is_published), "success")
            return redirect(url_for("content.show_article", article_id=article.id))
    if status == 200 and form.errors:
        status = INVALID
    return render_template(
        "content/edit.html",
        form=form,
        article=article,
        # For the embedded image manager (uploads/_article_images.html).
        images=article_images(article),
        next=url_for("content.edit_article", article_id=article.id),
    ), status


def _form_data(article: Article) -> dict[str, object]:
    return {"title": article.title, "body": article.body_md, "publish": article.is_published,
            "revision": content.revision(article)}


@bp.post("/articles/<int:article_id>/delete")
@editor_required
def delete_article(article_id: int) -> ResponseReturnValue:
    article = _readable_article(article_id, "delete")
    if EmptyForm().validate_on_submit():
        content.delete_article(current_user, article, still_signed_in=current_record_live)
        flash("The article is deleted.", "success")
    return redirect(url_for("content.list_articles"))


@bp.post("/articles/<int:article_id>/comments")
@login_required
@limiter.limit("20 per minute")
@limited_by(COMMENT_WRITES)
def add_comment(article_id: int) -> ResponseReturnValue:
    article = _readable_article(article_id, "comment on")
    form = CommentForm()
    if form.validate_on_submit():
        try:
            comment = content.add_comment(current_user, article, form.body.data or "",
                                          still_signed_in=current_record_live)
        except content.ContentError as exc:
            add_service_error(form, exc)
        else:
            flash("Your comment is posted.", "success")
            return redirect(_comment_url(comment))
    return _show(article, form, INVALID)


def _comment_url(comment: Comment) -> str:
    """The article page showing ``comment``, scrolled to it."""
    page = content.comment_page_number(comment)
    target = url_for(
        "content.show_article", article_id=comment.article_id, page=page if page > 1 else None
    )
    return f"{target}#comment-{comment.id}"


@bp.route("/comments/<int:comment_id>/edit", methods=["GET", "POST"])
@login_required
@limited_by(COMMENT_WRITES)
def edit_comment(comment_id: int) -> ResponseReturnValue:
    comment = _comment_in_readable_article(comment_id, "edit")
    authz.require(authz.can_edit_comment(current_user, comment), what=f"edit comment {comment_id}")
    form = CommentForm(data=None if request.method == "POST" else {
        "body": comment.body, "revision": content.comment_revision(comment)})
    status = 200
    if form.validate_on_submit():
        try:
            content.update_comment(current_user, comment, form.body.data or "",
                                   expected_revision=form.revision.data or None,
                                   still_signed_in=current_record_live)
        except content.EditConflictError as exc:
            form.form_errors.append(str(exc))  # the editor's text stays in the form
            form.revision.data = content.comment_revision(comment)
            status = CONFLICT
        except content.ContentError as exc:
            add_service_error(form, exc)
        else:
            flash("Your comment is updated.", "success")
            return redirect(_comment_url(comment))
    if status == 200 and form.errors:
        status = INVALID
    return render_template(
        "content/edit_comment.html", form=form, comment=comment, back=_comment_url(comment)
    ), status


@bp.post("/comments/<int:comment_id>/delete")
@login_required
def delete_comment(comment_id: int) -> ResponseReturnValue:
    comment = _comment_in_readable_article(comment_id, "delete")
    article_id, page = comment.article_id, content.comment_page_number(comment)
    if EmptyForm().validate_on_submit():
        content.delete_comment(current_user, comment, still_signed_in=current_record_live)
        flash("The comment is deleted.", "success")
    # Back to the page the comment was on (or the new last one, if it was the last comment
    # there), not to the first page of a long discussion.
    page = min(page, content.last_comment_page(article_id))
    target = url_for("content.show_article", article_id=article_id,
                     page=page if page > 1 else None)
    return redirect(f"{target}#comments-heading")
