"""``/articles``: the site's content services and authorization, behind bearer tokens."""

from __future__ import annotations

from flask import Response, abort, request

from bastion import pagecache
from bastion.api import bp
from bastion.api.auth import current_principal, may_act_on_others
from bastion.api.schemas import (
    LIST_PER_PAGE,
    ArticleCreate,
    ArticleList,
    ArticleOut,
    ArticleUpdate,
    ListQuery,
)
from bastion.api.spec import (
    Serialized,
    check_preconditions,
    has_preconditions,
    operation,
    representation_etag,
)
from bastion.api.users import author_out
from bastion.content import services
from bastion.content.write_limits import ARTICLE_WRITES, limited_by
from bastion.errors import problem
from bastion.models import Article, User
from bastion.security import authz
from bastion.security.access import bearer_required


def article_out(article: Article) -> ArticleOut:
    return ArticleOut(
        id=article.id,
        title=article.title,
        slug=article.slug,
        summary=article.summary,
        body=article.body_md,
        body_html=article.body_html,
        status=article.status,  # type: ignore[arg-type]
        published_at=article.published_at,
        created_at=article.created_at,
        updated_at=article.updated_at,
        author=author_out(article.author),
    )


def token_may_read(user: User, article: Article) -> bool:
    """The role's rule, and for other people's drafts the ``admin`` scope too: a token
    narrowed below its admin owner's powers sees what an editor's would, comments included."""
    return authz.can_read_article(user, article) and (
        article.is_published or article.author_id == user.id or may_act_on_others()
    )


def load_article(article_id: int) -> Article:
    """An article the token may see (``token_may_read``); anything else is absent.

    A change asked of a draft the token may not see answers the same 404 and is audited
    like a refusal on a visible article (reads are not: anyone may probe ids with GET).
    """
    user = current_principal().user
    attempt = "" if request.method in ("GET", "HEAD") else request.method.lower()
    article = services.get_article(user, article_id, attempt=attempt)
    if article is not None and not token_may_read(user, article):
        if attempt:
            authz.record_denial(hide=True, what=f"{attempt} article {article_id}")
        article = None
    if article is None:
        abort(404, description="There is no article with that id.")
    return article


@bp.errorhandler(services.ContentNotFoundError)
def deleted_meanwhile(exc: services.ContentNotFoundError) -> Response:
    """An article or comment deleted while the request acted on it (here or in
    ``bastion.api.comments``): the 404 problem+json given for one that never existed."""
    return problem(404, exc.message)


def _require_own_or_scope(article: Article, action: str) -> None:
    """403 for another user's article without the ``admin`` scope, audited as the pages'
    refusals are (``authz.require``): token probing must show in the trail."""
    if article.author_id != current_principal().user.id and not may_act_on_others():
        authz.record_denial(hide=False, what=f"{action} article {article.id}")
        abort(403, description="Changing other people's articles needs the 'admin' scope.")


def _refuse_if_changed(article: Article) -> None:
    """412 (rolling back, so a lock goes) when If-Match / If-None-Match fail against
    ``article`` as the caller read it.

    Asked again under the row lock (with the row read as committed), two clients holding
    the same ETag cannot both change the article: the second waits, then finds its ETag
    stale. Called after the token's and ownership checks: a refusal stays a 403 whatever
    the conditions (RFC 9110 13.2.1).
    """
    check_preconditions(representation_etag(article_out(article)))  # rolls back: lock goes


@bp.get("/articles")
@bearer_required
@operation(
    summary="Published articles, newest first; 'mine' lists your own, drafts included",
    description=(
        "The published list is the same for every reader, so a server may answer from a "
        "copy up to BASTION_PUBLIC_PAGE_CACHE_SECONDS old (5 s by default; up to 2 s more "
        "while a new copy is being made). It carries an "
        "ETag: send it back in If-None-Match for a 304. With mine=true the list is always "
        "current."
    ),
    tag="articles",
    scopes=("articles:read",),
    query=ListQuery,
    response=ArticleList,
    conditional=True,
)
def list_articles(query: ListQuery) -> ArticleList | Serialized:
    if query.mine:
        return _article_list(current_principal().user, query)
    return _published_list(query)


def _published_list(query: ListQuery) -> Serialized:
    """The published list as GET answers it now, with its ETag.

    It is the same for every token allowed to read it, so its JSON is reused for a few
    seconds (bastion.pagecache); the token, its scope and the rate limit were checked for
    this request before this is called.
    """
    key = ("json", "api.articles", query.q, str(query.page), str(query.per_page))

    def produce() -> bytes:
        return _article_list(None, query).model_dump_json().encode()

    # Searches and later pages are what a caller can vary without end: they live in the
    # store's share for such keys, and cannot push the first page out.
    first_page = not query.q and query.page == 1 and query.per_page == LIST_PER_PAGE
    tagged = pagecache.remember_tagged(key, produce, varied=not first_page)
    return Serialized(ArticleList, tagged.data, tagged.etag)


def _article_list(owner: User | None, query: ListQuery) -> ArticleList:
    """``owner``'s own articles, drafts included; the published list when None."""
    page = services.list_articles(
        owner,
        query=query.q,
        page=query.page,
        per_page=query.per_page,
        author_id=owner.id if owner is not None else None,
        published_only=owner is None,
        with_bodies=True,  # article_out returns them
    )
    return ArticleList.of(page, article_out)


@bp.post("/articles")
@bearer_required
@operation(
    summary="Write an article (editors and admins)",
    tag="articles",
    scopes=("articles:write",),
    body=ArticleCreate,
    response=ArticleOut,
    status=201,
    location=("api.get_article", "article_id"),
    collection_etag=True,
    description=(
        "If-Match is compared with the ETag that GET /articles (no query: the first page of "
        "the published list) answers at that moment; If-None-Match: * always fails (412)."
    ),
)
@limited_by(ARTICLE_WRITES)  # below operation: after the token, so the account pays
def create_article(body: ArticleCreate) -> ArticleOut:
    user = current_principal().user
    if has_preconditions():  # the list is read only for a client that asks for a condition
        check_preconditions(_published_list(ListQuery()).etag)
    article = services.create_article(user, title=body.title, body=body.body, publish=body.publish,
                                      still_signed_in=current_principal().still_signed_in)
    return article_out(article)


@bp.get("/articles/<int:article_id>")
@bearer_required
@operation(
    summary="One article",
    description=(
        "Carries an ETag: send it in If-None-Match for a 304, or in If-Match with a PATCH or "
        "DELETE so that it applies only to this version (412 if the article changed since)."
    ),
    tag="articles",
    scopes=("articles:read",),
    response=ArticleOut,
    conditional=True,
)
def get_article(article_id: int) -> ArticleOut:
    return article_out(load_article(article_id))


@bp.patch("/articles/<int:article_id>")
@bearer_required
@operation(
    summary="Change title, body or publication of an article you may edit",
    description=(
        "A field omitted or null is left unchanged. Send the article's ETag in If-Match to "
        "change only the version you read: if it changed since, nothing is changed and the "
        "answer is 412. The answer's ETag is the new version's."
    ),
    tag="articles",
    scopes=("articles:write",),
    body=ArticleUpdate,
    response=ArticleOut,
    preconditions=True,
)
@limited_by(ARTICLE_WRITES)
def update_article(article_id: int, body: ArticleUpdate) -> ArticleOut:
    article = load_article(article_id)
    _require_own_or_scope(article, "edit")
    principal = current_principal()
    user = principal.user
    fields = body.model_dump(exclude_unset=True)
    check = None
    if has_preconditions():
        # Before the body is processed (RFC 9110 13.2.1: a stale ETag is a 412 whatever the
        # body), on the version this request read; then again by the service under its
        # lock, after the Markdown is rendered: locking here would hold the row (SQLite:
        # every writer) through a render of seconds.
        _refuse_if_changed(article)
        check = _refuse_if_changed
    return article_out(services.update_article(
        user, article, **fields, check_locked=check, still_signed_in=principal.still_signed_in
    ))


@bp.delete("/articles/<int:article_id>")
@bearer_required
@operation(
    summary="Delete an article you may edit",
    description="With If-Match: only if the article is still that version (412 otherwise).",
    tag="articles",
    scopes=("articles:write",),
    status=204,
    preconditions=True,
)
def delete_article(article_id: int) -> None:
    article = load_article(article_id)
    _require_own_or_scope(article, "delete")
    principal = current_principal()
    # The conditions are checked by the service on the row as committed, under its lock
    # (taken after the actor's lock, in the order every other change takes them).
    services.delete_article(
        principal.user, article,
        check_locked=_refuse_if_changed if has_preconditions() else None,
        still_signed_in=principal.still_signed_in,
    )
