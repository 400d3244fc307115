"""HTTP semantics of the API that clients build on: where a created resource lives
(Location), versions of one article (ETag, If-None-Match, If-Match on PATCH and DELETE, so
two writers cannot silently undo each other), and the headers a cross-origin client may
read being the ones the API sends and documents."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import update

from bastion.api import CORS_ALLOW_HEADERS, CORS_EXPOSE_HEADERS
from bastion.content import services
from bastion.extensions import db
from bastion.models import Article, User
from tests.api.conftest import Api
from tests.factories import PASSWORD, ArticleFactory, UserFactory

ORIGIN = "https://app.example.org"


def _doc_headers(api: Api, path: str, method: str, status: str) -> dict[str, Any]:
    doc = api.call("GET", "/openapi.json").get_json()
    return doc["paths"][path][method]["responses"][status].get("headers", {})  # type: ignore[no-any-return]


@pytest.mark.asvs("V4.1.1")
def test_a_created_resource_is_named_in_location(
    api: Api, make_user: Callable[..., User]
) -> None:
    """A 201 without Location says the new resource is the collection itself (RFC 9110
    15.3.2); a client then has to guess the URL from the id in the body."""
    editor = make_user("editor")
    token = api.access_for(editor)
    created = api.call("POST", "/articles", token, json={"title": "T", "body": "B", "publish": True})
    assert created.status_code == 201
    article_id = created.get_json()["id"]
    assert created.headers["Location"] == f"/api/v1/articles/{article_id}"
    assert api.call("GET", created.headers["Location"][len("/api/v1"):], token).get_json()["id"] == article_id

    comment = api.call("POST", f"/articles/{article_id}/comments", token, json={"body": "c"})
    assert comment.status_code == 201
    assert comment.headers["Location"] == f"/api/v1/comments/{comment.get_json()['id']}"

    pat = api.call(
        "POST", "/tokens", token, json={"name": "ci", "scopes": ["articles:read"], "password": PASSWORD}
    )
    assert pat.status_code == 201
    assert pat.headers["Location"] == f"/api/v1/tokens/{pat.get_json()['id']}"
    # What the Location names is the resource: DELETE on it ends the token.
    assert api.call("DELETE", pat.headers["Location"][len("/api/v1"):], token).status_code == 204

    for path in ("/api/v1/articles", "/api/v1/articles/{article_id}/comments", "/api/v1/tokens"):
        assert "Location" in _doc_headers(api, path, "post", "201"), path
    page = api.client.get("/api/docs").get_data(as_text=True)
    create = page[page.index('id="op-create_article"') :]
    assert "<code>Location</code>" in create[: create.index("</article>")]


@pytest.mark.asvs("V4.1.1")
def test_one_article_has_an_etag_and_answers_304_while_it_holds(
    api: Api, make_user: Callable[..., User]
) -> None:
    editor = make_user("editor")
    token = api.access_for(editor)
    article = ArticleFactory(author=editor)
    first = api.call("GET", f"/articles/{article.id}", token)
    etag = first.headers["ETag"]
    assert api.call("HEAD", f"/articles/{article.id}", token).headers["ETag"] == etag
    again = api.call("GET", f"/articles/{article.id}", token, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.get_data() == b""
    assert again.headers["ETag"] == etag


@pytest.mark.asvs("V4.1.1")
@pytest.mark.parametrize("path", ["/articles/{id}", "/articles"])
def test_conditional_reads_follow_rfc_9110_not_werkzeug(
    api: Api, make_user: Callable[..., User], path: str
) -> None:
    """``If-Match: *`` is true whenever the resource exists (RFC 9110 13.1.1): Werkzeug's
    make_conditional answered it 412. A true If-Match with a matching If-None-Match is a
    304, not a 200 with the whole body again."""
    editor = make_user("editor")
    token = api.access_for(editor)
    path = path.format(id=ArticleFactory(author=editor, status="published").id)
    etag = api.call("GET", path, token).headers["ETag"]
    star = api.call("GET", path, token, headers={"If-Match": "*"})
    assert star.status_code == 200
    assert star.headers["ETag"] == etag
    both = api.call("GET", path, token, headers={"If-Match": etag, "If-None-Match": etag})
    assert both.status_code == 304
    stale = api.call("GET", path, token, headers={"If-Match": '"stale"', "If-None-Match": etag})
    assert stale.status_code == 412
    assert stale.mimetype == "application/problem+json"
    assert "ETag" in _doc_headers(api, "/api/v1/articles/{article_id}", "get", "200")


def _patch(api: Api, token: str, article_id: int, title: str, if_match: str | None) -> Any:
    headers = {"If-Match": if_match} if if_match is not None else {}
    return api.call("PATCH", f"/articles/{article_id}", token, json={"title": title}, headers=headers)


@pytest.mark.asvs("V2.3.3", "V8.2.2")
def test_a_patch_on_a_version_someone_changed_since_changes_nothing(
    api: Api, make_user: Callable[..., User]
) -> None:
    """Author and admin both read version 1; the admin saves; the author's save of its
    version 1 must be refused, not silently undo the admin's change (RFC 9110 13.1.1: a
    server MUST evaluate If-Match before performing the method)."""
    author, admin = make_user("editor"), make_user("admin")
    article = ArticleFactory(author=author, title="One")
    mine, theirs = api.access_for(author), api.access_for(admin)
    read = api.call("GET", f"/articles/{article.id}", mine).headers["ETag"]
    assert api.call("GET", f"/articles/{article.id}", theirs).headers["ETag"] == read

    assert _patch(api, theirs, article.id, "Moderated", read).status_code == 200
    stale = _patch(api, mine, article.id, "Mine", read)
    assert stale.status_code == 412
    assert stale.mimetype == "application/problem+json"
    assert "If-Match" in stale.get_json()["detail"]
    current = api.call("GET", f"/articles/{article.id}", mine)
    assert current.get_json()["title"] == "Moderated"

    # With the current ETag it goes through, and answers the new version's ETag.
    saved = _patch(api, mine, article.id, "Mine", current.headers["ETag"])
    assert saved.status_code == 200
    assert saved.get_json()["title"] == "Mine"
    assert saved.headers["ETag"] == api.call("GET", f"/articles/{article.id}", mine).headers["ETag"]
    # A condition that names no ETag at all is not a missing condition.
    for nothing in ("garbage", "", ","):
        assert _patch(api, mine, article.id, "Other", nothing).status_code == 412, nothing
    assert _patch(api, mine, article.id, "Any", "*").status_code == 200
    assert _patch(api, mine, article.id, "Weak", "W/" + saved.headers["ETag"]).status_code == 412
    db.session.expire_all()
    assert db.session.get(Article, article.id).title == "Any"  # type: ignore[union-attr]


@pytest.mark.asvs("V2.3.3")
def test_a_delete_of_a_version_someone_changed_since_deletes_nothing(
    api: Api, make_user: Callable[..., User]
) -> None:
    author = make_user("editor")
    article = ArticleFactory(author=author, title="One")
    token = api.access_for(author)
    read = api.call("GET", f"/articles/{article.id}", token).headers["ETag"]
    assert _patch(api, token, article.id, "Two", None).status_code == 200
    refused = api.call("DELETE", f"/articles/{article.id}", token, headers={"If-Match": read})
    assert refused.status_code == 412
    db.session.expire_all()
    assert db.session.get(Article, article.id) is not None
    current = api.call("GET", f"/articles/{article.id}", token).headers["ETag"]
    assert api.call("DELETE", f"/articles/{article.id}", token, headers={"If-Match": current}).status_code == 204
    assert api.call("DELETE", f"/articles/{article.id}", token, headers={"If-Match": current}).status_code == 404


@pytest.mark.asvs("V2.3.3")
def test_a_change_saved_while_the_patch_was_under_way_is_seen(
    api: Api, make_user: Callable[..., User], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other writer commits after this request loaded the article and before it
    checks If-Match: the check must look at the row as saved now, under the lock the
    change itself takes, not at the copy the request read at its start."""
    author = make_user("editor")
    article = ArticleFactory(author=author, title="One")
    article_id = article.id
    token = api.access_for(author)
    read = api.call("GET", f"/articles/{article_id}", token).headers["ETag"]
    _saved_meanwhile(monkeypatch, article_id, title="Theirs")
    assert _patch(api, token, article_id, "Mine", read).status_code == 412
    db.session.expire_all()
    assert db.session.get(Article, article_id).title == "Theirs"  # type: ignore[union-attr]


def _saved_meanwhile(monkeypatch: pytest.MonkeyPatch, article_id: int, **values: Any) -> None:
    """Another writer commits ``values`` to the article after this request loaded it, just
    before the service takes its first lock (the actor's, then the article's)."""
    real = services.lock_user

    def other_writer_commits_first(user_id: int) -> None:
        monkeypatch.setattr(services, "lock_user", real)
        with db.engine.connect() as other:
            other.execute(update(Article).where(Article.id == article_id).values(**values))
            other.commit()
        real(user_id)

    monkeypatch.setattr(services, "lock_user", other_writer_commits_first)


@pytest.mark.parametrize(
    ("meanwhile", "sent", "field", "wanted"),
    [
        ({"title": "Theirs"}, {"title": "One"}, "title", "One"),
        ({"status": "draft", "published_at": None}, {"publish": True}, "status", "published"),
    ],
    ids=["title-set-back", "publish-after-unpublish"],
)
def test_a_patch_without_conditions_applies_what_it_sends_over_a_change_made_meanwhile(
    api: Api,
    make_user: Callable[..., User],
    monkeypatch: pytest.MonkeyPatch,
    meanwhile: dict[str, Any],
    sent: dict[str, Any],
    field: str,
    wanted: str,
) -> None:
    """Without If-Match the last write wins, and the answer is what was stored. The service
    compared with the copy the request loaded: a title set back to the one it held then was
    "no change" to the ORM, and publishing an article unpublished meanwhile looked done.
    Nothing was written, yet the answer was 200 with the client's values and an ETag of a
    version that never existed."""
    author = make_user("editor")
    article = ArticleFactory(author=author, title="One", status="published")
    article_id = article.id
    token = api.access_for(author)
    _saved_meanwhile(monkeypatch, article_id, **meanwhile)
    resp = api.call("PATCH", f"/articles/{article_id}", token, json=sent)
    assert resp.status_code == 200
    assert resp.get_json()[field] == wanted
    db.session.expire_all()
    assert getattr(db.session.get(Article, article_id), field) == wanted
    current = api.call("GET", f"/articles/{article_id}", token)
    assert current.get_json() == resp.get_json()
    assert current.headers["ETag"] == resp.headers["ETag"]


def test_a_publish_sent_twice_at_once_keeps_the_first_publication_date(
    api: Api, make_user: Callable[..., User], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A retried or double-sent ``publish`` finds the first one committed while it waited
    for the lock. Judged on the draft it had loaded, it published again: the article
    moved to the top of the list with a new date."""
    author = make_user("editor")
    article = ArticleFactory(author=author, status="draft", published_at=None)
    article_id = article.id
    token = api.access_for(author)
    first = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    _saved_meanwhile(monkeypatch, article_id, status="published", published_at=first)
    resp = api.call("PATCH", f"/articles/{article_id}", token, json={"publish": True})
    assert resp.status_code == 200
    assert resp.get_json()["published_at"].startswith("2024-05-01T12:00")
    db.session.expire_all()
    assert db.session.get(Article, article_id).published_at == first  # type: ignore[union-attr]


@pytest.mark.asvs("V8.2.2")
def test_a_refused_change_stays_refused_whatever_its_conditions(
    api: Api, make_user: Callable[..., User]
) -> None:
    """Preconditions are evaluated only for a change that would otherwise be made (RFC
    9110 13.2.1): a 412 here would tell a stranger whether an ETag guess was right."""
    author, stranger = make_user("editor"), make_user("editor")
    article = ArticleFactory(author=author, title="One")
    token = api.access_for(stranger)
    for if_match in ("garbage", api.call("GET", f"/articles/{article.id}", token).headers["ETag"]):
        assert _patch(api, token, article.id, "X", if_match).status_code == 403
        refused = api.call("DELETE", f"/articles/{article.id}", token, headers={"If-Match": if_match})
        assert refused.status_code == 403


@pytest.mark.asvs("V3.4.2")
def test_a_cross_origin_client_may_read_every_header_the_api_documents(
    app: Flask, api: Api, make_user: Callable[..., User], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Walks the document: every response header it promises is exposed to an allowed
    origin under the name the API really sends (X-RateLimit-*, not RateLimit-*), and the
    condition headers may be sent cross-origin."""
    monkeypatch.setitem(app.config, "CORS_ORIGINS", {ORIGIN})
    monkeypatch.setitem(app.config, "ARTICLE_WRITE_RATE_LIMIT", "1 per minute")
    doc = api.call("GET", "/openapi.json").get_json()
    promised = {
        name.lower()
        for ops in doc["paths"].values()
        for op in ops.values()
        for answer in op["responses"].values()
        for name in answer.get("headers", {})
    }
    assert {"etag", "location", "retry-after", "x-ratelimit-limit"} <= promised
    exposed = {h.strip().lower() for h in CORS_EXPOSE_HEADERS.split(",")}
    assert promised <= exposed, promised - exposed

    token = api.access_for(make_user("editor"))
    body = {"title": "T", "body": "B"}
    api.call("POST", "/articles", token, json=body)
    throttled = api.call("POST", "/articles", token, json={"title": "U", "body": "B"},
                         headers={"Origin": ORIGIN})
    assert throttled.status_code == 429
    sent = {name.lower() for name, _ in throttled.headers}
    readable = {
        h.strip().lower() for h in throttled.headers["Access-Control-Expose-Headers"].split(",")
    }
    assert {"x-ratelimit-limit", "x-ratelimit-remaining", "retry-after"} <= sent & readable

    allowed = {h.strip().lower() for h in CORS_ALLOW_HEADERS.split(",")}
    assert {"if-match", "if-none-match"} <= allowed


@pytest.mark.postgres
@pytest.mark.asvs("V2.3.3")
def test_two_patches_of_one_version_at_once_cannot_both_succeed(
    make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two clients send a PATCH with the same If-Match at the same moment: both have read
    the article and passed their own checks when they reach the lock. One wins; the other
    waits for its commit and then finds its ETag stale, instead of overwriting it."""
    app = make_app(backend="postgresql")
    with app.app_context():
        author = UserFactory(role_name="editor")
        article = ArticleFactory(author=author, title="One")
        article_id = article.id
        api = Api(app.test_client())
        tokens = {"Author": api.access_for(author), "Other": api.access_for(author)}
        read = api.call("GET", f"/articles/{article_id}", tokens["Author"]).headers["ETag"]
        db.session.remove()
    real = services.lock_user
    both_loaded = threading.Barrier(2, timeout=10)
    first_calls = [0]

    def meet_then_lock(*args: Any, **kwargs: Any) -> None:
        first_calls[0] += 1
        if first_calls[0] <= 2:  # each request's first lock: wait until both got here
            both_loaded.wait()
        real(*args, **kwargs)

    monkeypatch.setattr(services, "lock_user", meet_then_lock)
    statuses: dict[str, int] = {}

    def patch(who: str) -> None:
        statuses[who] = _patch(Api(app.test_client()), tokens[who], article_id, who, read).status_code

    threads = [threading.Thread(target=patch, args=(who,)) for who in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(statuses.values()) == [200, 412], statuses
    winner = next(who for who, status in statuses.items() if status == 200)
    with app.app_context():
        assert db.session.get(Article, article_id).title == winner  # type: ignore[union-attr]
        db.session.remove()


def test_the_conditions_each_operation_reads_are_documented_as_header_parameters(
    api: Api,
) -> None:
    """The document matches the implementation: the operations that read If-Match and
    If-None-Match say so, and only those: the reads that carry an ETag, and every change
    (tests/api/test_preconditions.py)."""
    doc = api.client.get("/api/v1/openapi.json").get_json()
    conditional_reads = {("/api/v1/articles", "get"), ("/api/v1/articles/{article_id}", "get")}
    for path, item in doc["paths"].items():
        for method, op in item.items():
            headers = {p["name"] for p in op.get("parameters", []) if p["in"] == "header"}
            reads = method != "get" or (path, method) in conditional_reads
            expected = {"If-Match", "If-None-Match"} if reads else set()
            assert headers == expected, (path, method)


def test_a_conditional_patch_renders_before_it_locks_the_row(
    api: Api, make_user: Callable[..., User], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A body's render can take seconds; the service renders before it locks the row
    (SQLite: every writer). Checking If-Match under a lock taken by the view held it through
    the render."""
    events: list[str] = []
    real_render, real_lock = services.render_markdown, services._lock_row

    def render(text: str, *args: Any) -> str:
        events.append("render")
        return real_render(text, *args)

    def lock(*args: Any) -> bool:
        events.append("lock")
        return real_lock(*args)

    monkeypatch.setattr(services, "render_markdown", render)
    monkeypatch.setattr(services, "_lock_row", lock)
    author = make_user("editor")
    article = ArticleFactory(author=author)
    token = api.access_for(author)
    etag = api.call("GET", f"/articles/{article.id}", token).headers["ETag"]
    resp = api.call("PATCH", f"/articles/{article.id}", token, json={"body": "New text"},
                    headers={"If-Match": etag})
    assert resp.status_code == 200
    assert events[:2] == ["render", "lock"]
    # A stale ETag is refused before the body is processed: no render, no lock.
    events.clear()
    stale = api.call("PATCH", f"/articles/{article.id}", token, json={"body": "Other"},
                     headers={"If-Match": etag})
    assert stale.status_code == 412
    assert events == []


@pytest.mark.parametrize("origin", [None, "https://evil.example"])
def test_options_on_an_api_route_is_no_content_with_allow(api: Api, origin: str | None) -> None:
    """Flask's automatic OPTIONS answer is ``200 text/html`` with an empty body: not an
    answer an API gives. It is 204 with the methods in Allow, and no content type."""
    headers = {"Origin": origin, "Access-Control-Request-Method": "GET"} if origin else {}
    resp = api.call("OPTIONS", "/me", headers=headers)
    assert resp.status_code == 204
    assert set(resp.allow) == {"GET", "HEAD", "PATCH", "OPTIONS"}
    assert resp.get_data() == b""
    assert "Content-Type" not in resp.headers
    assert "Content-Length" not in resp.headers  # RFC 9110 8.6: none in a 204
    assert "Access-Control-Allow-Origin" not in resp.headers
    article_methods = {"GET", "HEAD", "PATCH", "DELETE", "OPTIONS"}
    assert set(api.call("OPTIONS", "/articles/1").allow) == article_methods
    page = api.client.options("/")  # pages keep Flask's answer
    assert page.status_code == 200
    assert set(page.allow) == {"GET", "HEAD", "OPTIONS"}


@pytest.mark.asvs("V3.4.2")
def test_a_preflight_from_an_allowed_origin_is_no_content_with_the_cors_answer(
    app: Flask, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(app.config, "CORS_ORIGINS", {ORIGIN})
    resp = api.call(
        "OPTIONS",
        "/articles",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert resp.status_code == 204  # a preflight needs any 2xx (Fetch: "ok status")
    assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in resp.headers["Access-Control-Allow-Methods"]
    assert resp.headers["Access-Control-Allow-Headers"] == CORS_ALLOW_HEADERS
    assert "Access-Control-Allow-Credentials" not in resp.headers
    assert set(resp.allow) == {"GET", "HEAD", "POST", "OPTIONS"}


def test_an_answer_without_a_body_names_no_content_type(
    api: Api, make_user: Callable[..., User]
) -> None:
    """A 204 from the API (a deletion, a revocation) has no body, so no type: Werkzeug's
    default ``text/html`` told clients to expect a page."""
    author = make_user("editor")
    article_id = ArticleFactory(author=author).id
    token = api.access_for(author)
    deleted = api.call("DELETE", f"/articles/{article_id}", token)
    assert deleted.status_code == 204 and "Content-Type" not in deleted.headers
    revoked = api.call("POST", "/auth/revoke", json={"token": "not-a-token"})
    assert revoked.status_code == 204 and "Content-Type" not in revoked.headers
