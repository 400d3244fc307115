"""If-Match and If-None-Match on every change the API makes, not only on articles.

RFC 9110 13.1.1: a server MUST evaluate If-Match before performing the method. A listed
entity-tag can only match a current representation's ETag, so on a resource that carries
none, ``If-Match: "x"`` is false (412) and ``If-Match: *`` is true while the resource
exists. Ignoring the header, as these views did, made a change the client had asked to be
conditional (a retried DELETE, a PATCH after a stale read) unconditionally.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from bastion.api import tokens
from bastion.api.openapi import NO_ETAG_NOTE
from bastion.api.spec import EXISTS, NO_ETAG, PRECONDITION_FAILED, operation_of
from bastion.extensions import db
from bastion.models import ApiToken, Article, Comment, RefreshToken, User
from tests.api.conftest import Api
from tests.factories import PASSWORD, ArticleFactory, CommentFactory

MakeUser = Callable[..., User]
SAFE = {"GET", "HEAD", "OPTIONS"}


@dataclass
class Change:
    """One valid change on an existing resource, and how to tell whether it happened."""

    method: str
    path: str
    token: str | None
    done: Callable[[], bool]
    json: dict[str, Any] | None = None
    status: int = 200
    tagged: bool = False  # the target carries an ETag (its 412 says "not the current one")
    headers: dict[str, str] = field(default_factory=dict)


def _count(model: Any, *where: Any) -> int:
    db.session.expire_all()
    return int(db.session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def _update_me(api: Api, make_user: MakeUser) -> Change:
    user = make_user("editor", bio="before")

    def done() -> bool:
        db.session.expire_all()
        return db.session.get(User, user.id).bio == "after"  # type: ignore[union-attr]

    return Change("PATCH", "/me", api.access_for(user), done, {"bio": "after"})


def _delete_comment(api: Api, make_user: MakeUser) -> Change:
    user = make_user("viewer")
    comment = CommentFactory(author=user, article=ArticleFactory(status="published"))
    comment_id = comment.id
    return Change("DELETE", f"/comments/{comment_id}", api.access_for(user),
                  lambda: _count(Comment, Comment.id == comment_id) == 0, status=204)


def _create_comment(api: Api, make_user: MakeUser) -> Change:
    user = make_user("viewer")
    article_id = ArticleFactory(status="published").id
    return Change("POST", f"/articles/{article_id}/comments", api.access_for(user),
                  lambda: _count(Comment, Comment.article_id == article_id) == 1,
                  {"body": "A comment"}, status=201)


def _delete_token(api: Api, make_user: MakeUser) -> Change:
    user = make_user("editor")
    api.pat_for(user, ["articles:read"])
    token_id = db.session.scalar(select(ApiToken.id).where(ApiToken.user_id == user.id))
    return Change("DELETE", f"/tokens/{token_id}", api.access_for(user),
                  lambda: _count(ApiToken, ApiToken.id == token_id,
                                 ApiToken.revoked_at.is_not(None)) == 1, status=204)


def _create_token(api: Api, make_user: MakeUser) -> Change:
    user = make_user("editor")
    body = {"name": "ci", "scopes": ["articles:read"], "password": PASSWORD}
    return Change("POST", "/tokens", api.access_for(user),
                  lambda: _count(ApiToken, ApiToken.user_id == user.id) == 1, body, status=201)


def _create_article(api: Api, make_user: MakeUser) -> Change:
    user = make_user("editor")
    return Change("POST", "/articles", api.access_for(user),
                  lambda: _count(Article, Article.author_id == user.id) == 1,
                  {"title": "T", "body": "B"}, status=201, tagged=True)


def _update_article(api: Api, make_user: MakeUser) -> Change:
    user = make_user("editor")
    article_id = ArticleFactory(author=user, title="Before").id

    def done() -> bool:
        db.session.expire_all()
        return db.session.get(Article, article_id).title == "After"  # type: ignore[union-attr]

    return Change("PATCH", f"/articles/{article_id}", api.access_for(user), done,
                  {"title": "After"}, tagged=True)


def _delete_article(api: Api, make_user: MakeUser) -> Change:
    user = make_user("editor")
    article_id = ArticleFactory(author=user).id
    return Change("DELETE", f"/articles/{article_id}", api.access_for(user),
                  lambda: _count(Article, Article.id == article_id) == 0,
                  status=204, tagged=True)


def _issue_token(api: Api, make_user: MakeUser) -> Change:
    user = make_user("editor")
    return Change("POST", "/auth/token", None,
                  lambda: _count(RefreshToken, RefreshToken.user_id == user.id) == 1,
                  {"username": user.username, "password": PASSWORD})


def _refresh_token(api: Api, make_user: MakeUser) -> Change:
    user = make_user("editor")
    pair = tokens.issue_pair(user)
    return Change("POST", "/auth/refresh", None,
                  lambda: _count(RefreshToken, RefreshToken.user_id == user.id) == 2,
                  {"refresh_token": pair.refresh_token})


def _revoke_token(api: Api, make_user: MakeUser) -> Change:
    access = api.access_for(make_user("editor"))
    return Change("POST", "/auth/revoke", None,
                  lambda: api.call("GET", "/me", access).status_code == 401,
                  {"token": access}, status=204)


CHANGES: dict[str, Callable[[Api, MakeUser], Change]] = {
    "api.update_me": _update_me,
    "api.delete_comment": _delete_comment,
    "api.create_comment": _create_comment,
    "api.delete_token": _delete_token,
    "api.create_token": _create_token,
    "api.create_article": _create_article,
    "api.update_article": _update_article,
    "api.delete_article": _delete_article,
    "api.issue_token": _issue_token,
    "api.refresh_token": _refresh_token,
    "api.revoke_token": _revoke_token,
}


def _changes_served(app: Flask) -> set[str]:
    return {
        rule.endpoint
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith("api.") and (rule.methods or set()) - SAFE
        and operation_of(app.view_functions[rule.endpoint]) is not None
    }


def _send(api: Api, change: Change, **headers: str) -> Any:
    return api.call(change.method, change.path, change.token, json=change.json,
                    headers={**change.headers, **headers})


def test_every_change_the_api_serves_is_in_the_table(app: Flask) -> None:
    """A new state-changing route must show here that it evaluates the conditions."""
    assert _changes_served(app) == set(CHANGES)


@pytest.mark.parametrize("endpoint", CHANGES)
def test_an_if_match_etag_that_cannot_match_changes_nothing(
    endpoint: str, api: Api, make_user: MakeUser
) -> None:
    change = CHANGES[endpoint](api, make_user)
    refused = _send(api, change, **{"If-Match": '"x"'})
    assert refused.status_code == 412, refused.get_json()
    assert refused.mimetype == "application/problem+json"
    assert refused.get_json()["detail"] == (PRECONDITION_FAILED if change.tagged else NO_ETAG)
    assert not change.done()


@pytest.mark.parametrize("endpoint", CHANGES)
def test_if_match_star_acts_on_an_existing_resource(
    endpoint: str, api: Api, make_user: MakeUser
) -> None:
    change = CHANGES[endpoint](api, make_user)
    resp = _send(api, change, **{"If-Match": "*"})
    assert resp.status_code == change.status, resp.get_json()
    assert change.done()


@pytest.mark.parametrize("endpoint", CHANGES)
def test_if_none_match_star_refuses_a_change_to_an_existing_resource(
    endpoint: str, api: Api, make_user: MakeUser
) -> None:
    """``If-None-Match: *`` is false whenever the resource exists (13.1.2): a client
    meaning "only if there is nothing yet" never gets its change made."""
    change = CHANGES[endpoint](api, make_user)
    refused = _send(api, change, **{"If-None-Match": "*"})
    assert refused.status_code == 412, refused.get_json()
    if not change.tagged:
        assert refused.get_json()["detail"] == EXISTS
    assert not change.done()
    listed = _send(api, change, **{"If-None-Match": '"x"'})  # names no current version
    assert listed.status_code == change.status, listed.get_json()


@pytest.mark.parametrize("header", ['"x"', "garbage", ""])
def test_a_garbled_if_match_on_an_untagged_resource_is_refused(
    header: str, api: Api, make_user: MakeUser
) -> None:
    """A header that is present but names no ETag fails too: never a silent ``*``."""
    change = _update_me(api, make_user)
    assert _send(api, change, **{"If-Match": header}).status_code == 412
    assert not change.done()


def test_post_articles_compares_if_match_with_the_list_etag(
    api: Api, make_user: MakeUser
) -> None:
    """The collection carries an ETag (GET /articles): naming it is a match, not a 412."""
    change = _create_article(api, make_user)
    current = api.call("GET", "/articles", change.token).headers["ETag"]
    resp = _send(api, change, **{"If-Match": current})
    assert resp.status_code == 201, resp.get_json()
    ArticleFactory(status="published")  # the list changes
    stale = api.call("POST", "/articles", change.token, json={"title": "U", "body": "B"},
                     headers={"If-Match": current})
    assert stale.status_code == 412
    assert stale.get_json()["detail"] == PRECONDITION_FAILED
    assert _count(Article, Article.title == "U") == 0


@pytest.mark.asvs("V8.2.2")
def test_a_missing_resource_stays_404_whatever_the_conditions(
    api: Api, make_user: MakeUser
) -> None:
    """Evaluated after the lookup: what does not exist, or is hidden from the caller
    (another's token, a comment on another's draft), is a 404 whatever the conditions;
    ``If-Match: *`` in particular must not tell an existing hidden record from none."""
    user, other = make_user("viewer"), make_user("editor")
    token = api.access_for(user)
    api.pat_for(other, ["articles:read"])
    others_token = db.session.scalar(select(ApiToken.id).where(ApiToken.user_id == other.id))
    draft = ArticleFactory(author=other, status="draft")
    hidden = CommentFactory(author=other, article=draft)
    for header in ({"If-Match": '"x"'}, {"If-Match": "*"}, {"If-None-Match": "*"}):
        for method, path, body in (
            ("DELETE", "/comments/2147483000", None),
            ("DELETE", f"/comments/{hidden.id}", None),
            ("DELETE", f"/tokens/{others_token}", None),
            ("DELETE", "/tokens/2147483000", None),
            ("POST", "/articles/2147483000/comments", {"body": "c"}),
            ("POST", f"/articles/{draft.id}/comments", {"body": "c"}),
        ):
            resp = api.call(method, path, token, json=body, headers=header)
            assert resp.status_code == 404, (method, path, header, resp.get_json())
    assert _count(ApiToken, ApiToken.revoked_at.is_not(None)) == 0
    assert _count(Comment) == 1


@pytest.mark.asvs("V8.2.2")
def test_a_refusal_keeps_its_status_whatever_the_conditions(
    api: Api, make_user: MakeUser
) -> None:
    """RFC 9110 13.2.1: conditions are evaluated after authorization, so a stranger's
    conditional request is refused as any other would be, not answered 412."""
    author, stranger = make_user("viewer"), make_user("viewer")
    comment = CommentFactory(author=author, article=ArticleFactory(status="published"))
    own_draft = ArticleFactory(author=stranger, status="draft")
    token = api.access_for(stranger)
    narrow = api.pat_for(stranger, ["articles:read"])
    for header in ({"If-Match": '"x"'}, {"If-None-Match": "*"}):
        for method, path, credential, body in (
            ("DELETE", f"/comments/{comment.id}", token, None),  # another's comment
            ("POST", f"/articles/{own_draft.id}/comments", token, {"body": "c"}),  # a draft
            ("PATCH", "/me", narrow, {"bio": "x"}),  # a personal token lacks 'account'
            ("DELETE", f"/comments/{comment.id}", None, None),  # no token at all
        ):
            resp = api.call(method, path, credential, json=body, headers=header)
            assert resp.status_code == (401 if credential is None else 403), (path, header)
    assert _count(Comment, Comment.id == comment.id) == 1


def test_the_document_states_the_conditions_of_every_change(app: Flask, api: Api) -> None:
    """Each change documents If-Match, If-None-Match and the 412; those whose target has
    no ETag say that only ``*`` can match."""
    doc = api.call("GET", "/openapi.json").get_json()
    by_id = {
        op["operationId"]: op for item in doc["paths"].values() for op in item.values()
    }
    for endpoint in CHANGES:
        op = by_id[endpoint.split(".", 1)[1]]
        headers = {p["name"] for p in op.get("parameters", []) if p["in"] == "header"}
        assert headers == {"If-Match", "If-None-Match"}, endpoint
        assert "412" in op["responses"], endpoint
        tagged = endpoint in ("api.create_article", "api.update_article", "api.delete_article")
        assert (NO_ETAG_NOTE in op.get("description", "")) is not tagged, endpoint
    assert set(CHANGES) == _changes_served(app)
