"""The reused published list and the verified-token cache: cheaper, and never a way around
authentication, authorization, revocation or expiry."""

from __future__ import annotations

import time
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event
from werkzeug.http import generate_etag

from bastion import pagecache
from bastion.api import tokens
from bastion.extensions import db
from bastion.models import utcnow
from tests.api.conftest import Api
from tests.factories import ArticleFactory, UserFactory


def _article_selects(app: Flask, call: Any) -> tuple[Any, int]:
    seen: list[str] = []

    def record(*args: Any) -> None:
        statement = args[2]
        if "FROM articles" in statement:
            seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        return call(), len(seen)
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


@pytest.mark.usefixtures("public_pages_reused")
def test_published_list_is_built_once_and_answered_with_an_etag(app: Flask, api: Api) -> None:
    ArticleFactory(title="Cached once")
    token = api.access_for(UserFactory())
    first, reads = _article_selects(app, lambda: api.call("GET", "/articles", token))
    assert first.status_code == 200 and reads == 2  # count + page
    again, reads = _article_selects(app, lambda: api.call("GET", "/articles", token))
    assert again.status_code == 200 and reads == 0
    assert again.data == first.data
    assert again.headers["ETag"] == first.headers["ETag"] == f'"{generate_etag(first.data)}"'
    assert again.mimetype == "application/json"
    unchanged = api.call("GET", "/articles", token, headers={"If-None-Match": first.headers["ETag"]})
    assert unchanged.status_code == 304 and unchanged.data == b""
    # Different pages and searches are different entries, parsed (not raw) parameters.
    other = api.call("GET", "/articles?per_page=5", token)
    assert other.get_json()["per_page"] == 5


@pytest.mark.asvs("V8.2.1")
@pytest.mark.usefixtures("public_pages_reused")
def test_reused_list_still_needs_a_valid_token_with_the_scope(api: Api) -> None:
    ArticleFactory()
    reader = UserFactory()
    token = api.access_for(reader)
    assert api.call("GET", "/articles", token).status_code == 200  # stored now
    assert api.call("GET", "/articles").status_code == 401
    assert api.call("GET", "/articles", token + "x").status_code == 401
    narrow = api.pat_for(reader, ["comments:write"])
    resp = api.call("GET", "/articles", narrow)
    assert resp.status_code == 403
    assert "articles:read" in resp.get_json()["detail"]


@pytest.mark.asvs("V7.4.1", "V9.2.1")
@pytest.mark.usefixtures("public_pages_reused")
def test_revoked_token_is_refused_although_its_signature_check_is_cached(api: Api) -> None:
    ArticleFactory()
    pair = tokens.issue_pair(UserFactory())
    assert api.call("GET", "/articles", pair.access_token).status_code == 200
    assert api.call("GET", "/articles", pair.access_token).status_code == 200  # cached path
    tokens.revoke_token(pair.access_token)
    assert api.call("GET", "/articles", pair.access_token).status_code == 401


@pytest.mark.asvs("V7.4.2")
def test_disabled_user_and_password_change_end_a_cached_token(api: Api) -> None:
    user, other = UserFactory(), UserFactory()
    token, other_token = api.access_for(user), api.access_for(other)
    assert api.call("GET", "/me", token).status_code == 200
    assert api.call("GET", "/me", other_token).status_code == 200
    user.disabled_at = utcnow()
    time.sleep(0.002)  # a change is ordered after the token by the millisecond
    other.password_changed_at = utcnow()
    db.session.commit()
    assert api.call("GET", "/me", token).status_code == 401
    assert api.call("GET", "/me", other_token).status_code == 401


@pytest.mark.asvs("V9.2.1")
def test_expiry_is_checked_again_for_a_cached_token(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = api.access_for(UserFactory())
    assert api.call("GET", "/me", token).status_code == 200  # verified and remembered
    later = time.time() + 16 * 60  # past the 15-minute access lifetime
    monkeypatch.setattr(tokens.time, "time", lambda: later)
    resp = api.call("GET", "/me", token)
    assert resp.status_code == 401
    assert "expired" in resp.get_json()["detail"]


@pytest.mark.asvs("V9.2.1")
def test_a_cached_token_ends_at_the_same_instant_as_a_verified_one(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PyJWT refuses a token once ``exp <= now``; the remembered one ends then too, not a
    second (or a cache lifetime) later."""
    token = api.access_for(UserFactory())
    exp = tokens.decode(token, "access")["exp"]
    assert api.call("GET", "/me", token).status_code == 200  # remembered
    monkeypatch.setattr(tokens.time, "time", lambda: exp - 0.001)
    assert api.call("GET", "/me", token).status_code == 200
    monkeypatch.setattr(tokens.time, "time", lambda: float(exp))
    assert api.call("GET", "/me", token).status_code == 401
    # Forgotten once refused: a clock stepped back does not bring it back from memory.
    monkeypatch.setattr(tokens.time, "time", lambda: exp - 0.001)
    assert tokens.hashlib.sha256(token.encode()).digest() not in tokens._verified_cache()


def test_verified_token_cache_is_bounded(
    app: Flask, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tokens, "_VERIFIED_MAX", 3)
    user = UserFactory()
    for _ in range(7):
        assert api.call("GET", "/me", api.access_for(user)).status_code == 200
    _keyset, cache = app.extensions["bastion.jwt_verified"]
    assert len(cache) <= 3


@pytest.mark.asvs("V14.2.2", "V8.2.2")
@pytest.mark.usefixtures("public_pages_reused")
def test_an_article_unpublished_through_the_api_leaves_the_reused_list_at_once(
    api: Api,
) -> None:
    """The reused list is kept for BASTION_PUBLIC_PAGE_CACHE_SECONDS: a draft again must
    not stay in it for that long, nor may a reader's old ETag still get a 304."""
    author = UserFactory(role_name="editor")
    article = ArticleFactory(author=author, status="published", title="Said too much")
    reader = api.access_for(UserFactory())
    first = api.call("GET", "/articles", reader)
    assert [a["title"] for a in first.get_json()["items"]] == ["Said too much"]
    patched = api.call("PATCH", f"/articles/{article.id}", api.access_for(author),
                       json={"publish": False})
    assert patched.status_code == 200 and patched.get_json()["status"] == "draft"
    again = api.call("GET", "/articles", reader, headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 200
    assert again.get_json()["total"] == 0 and b"Said too much" not in again.data


@pytest.mark.usefixtures("public_pages_reused")
def test_own_list_with_drafts_is_never_reused(api: Api) -> None:
    author = UserFactory(role_name="editor")
    token = api.access_for(author)
    assert api.call("GET", "/articles?mine=true", token).get_json()["total"] == 0
    ArticleFactory(author=author, status="draft", published_at=None, title="Fresh draft")
    mine = api.call("GET", "/articles?mine=true", token).get_json()
    assert [a["title"] for a in mine["items"]] == ["Fresh draft"]
    # Nobody else's list carries it, cached or not.
    other = api.access_for(UserFactory())
    assert api.call("GET", "/articles", other).get_json()["total"] == 0


def test_store_is_bounded_by_bytes(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pagecache, "STORE_BUDGET_BYTES", 1000)
    monkeypatch.setattr(pagecache, "ENTRY_MAX_BYTES", 600)
    app.config["PUBLIC_PAGE_CACHE_SECONDS"] = 60
    try:
        with app.test_request_context("/"):
            pagecache.clear()
            assert pagecache.remember_tagged(("big",), lambda: b"x" * 700).data == b"x" * 700
            store = app.extensions["bastion.page_cache"]
            assert len(store) == 0  # too big to keep
            for i in range(5):
                pagecache.remember_tagged((str(i),), lambda: b"y" * 300)
            assert store.size <= 1000
            assert len(store) <= 3
    finally:
        app.config["PUBLIC_PAGE_CACHE_SECONDS"] = 0
        with app.test_request_context("/"):
            pagecache.clear()


def test_document_declares_the_etag_and_304_of_the_list(api: Api) -> None:
    doc = api.call("GET", "/openapi.json").get_json()
    listing = doc["paths"]["/api/v1/articles"]["get"]
    assert "ETag" in listing["responses"]["200"]["headers"]
    assert "304" in listing["responses"]
    assert "BASTION_PUBLIC_PAGE_CACHE_SECONDS" in listing["description"]
    assert "304" not in doc["paths"]["/api/v1/articles"]["post"]["responses"]


def test_own_list_answers_carry_an_etag_too(api: Api) -> None:
    token = api.access_for(UserFactory(role_name="editor"))
    first = api.call("GET", "/articles?mine=true", token)
    again = api.call(
        "GET", "/articles?mine=true", token, headers={"If-None-Match": first.headers["ETag"]}
    )
    assert again.status_code == 304


@pytest.mark.asvs("V4.1.1", "V16.5.3")
@pytest.mark.parametrize("query", ["", "?mine=true"])
def test_a_failed_if_match_is_a_documented_problem_not_the_list(api: Api, query: str) -> None:
    """Werkzeug answers a stale If-Match with 412 but left the whole list in the body, as
    application/json, under a status the document did not list."""
    ArticleFactory(title="Listed")
    token = api.access_for(UserFactory(role_name="editor"))
    first = api.call("GET", f"/articles{query}", token)
    stale = api.call("GET", f"/articles{query}", token, headers={"If-Match": '"stale"'})
    assert stale.status_code == 412
    assert stale.mimetype == "application/problem+json"
    assert stale.get_json()["status"] == 412
    assert b"Listed" not in stale.data
    current = api.call(
        "GET", f"/articles{query}", token, headers={"If-Match": first.headers["ETag"]}
    )
    assert current.status_code == 200 and current.data == first.data
    doc = api.call("GET", "/openapi.json").get_json()
    assert "412" in doc["paths"]["/api/v1/articles"]["get"]["responses"]
    # So can a POST, which compares If-Match with this list's ETag (test_preconditions).
    assert "412" in doc["paths"]["/api/v1/articles"]["post"]["responses"]


@pytest.mark.usefixtures("public_pages_reused")
def test_searches_and_later_pages_cannot_push_the_first_page_out(app: Flask, api: Api) -> None:
    """Search terms and page numbers are the caller's to vary without end: they live in the
    store's share for such keys, so a flood of them leaves the list everyone asks for."""
    ArticleFactory(title="Kept")
    token = api.access_for(UserFactory())
    assert api.call("GET", "/articles", token).status_code == 200
    first_key = ("json", "api.articles", "", "1", "20")
    budget = pagecache.MAX_ENTRIES // pagecache.VARIED_SHARE
    with app.test_request_context():
        for n in range(budget + 5):
            pagecache.remember_tagged(("json", "api.articles", f"junk{n}", "1", "20"),
                                      lambda: b"[]")
        store = pagecache._store_for_app()
        assert first_key in store.entries and first_key not in store.varied
        assert len(store.varied) <= budget
    _, reads = _article_selects(app, lambda: api.call("GET", "/articles", token))
    assert reads == 0  # still served from the store


@pytest.mark.asvs("V14.2.2")
@pytest.mark.usefixtures("public_pages_reused")
def test_a_list_made_before_another_worker_unpublished_is_not_reused_past_the_window(
    app: Flask, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker that unpublishes drops its own copies; this one keeps its list for the
    documented 5 s + 2 s at most, even while a request is still renewing it."""
    from bastion.content import services as content

    clock = [1000.0]
    monkeypatch.setattr(pagecache.time, "monotonic", lambda: clock[0])
    monkeypatch.setitem(app.config, "PUBLIC_PAGE_CACHE_SECONDS", 5)
    author = UserFactory(role_name="editor")
    article = ArticleFactory(author=author, status="published", title="Said too much")
    reader = api.access_for(UserFactory())
    first = api.call("GET", "/articles", reader)
    assert b"Said too much" in first.data
    kept = app.extensions[pagecache._CACHE_KEY]
    content.update_article(author, article, publish=False)  # in another worker
    app.extensions[pagecache._CACHE_KEY] = kept
    clock[0] = 1005.5
    assert kept.get(next(iter(kept.entries))) is None  # a renewal begins on another thread
    clock[0] = 1005 + pagecache.REFRESH_GRACE_SECONDS
    late = api.call("GET", "/articles", reader, headers={"If-None-Match": first.headers["ETag"]})
    assert late.status_code == 200
    assert late.get_json()["total"] == 0 and b"Said too much" not in late.data


@pytest.mark.asvs("V8.2.1", "V14.2.2")
@pytest.mark.usefixtures("public_pages_reused")
def test_the_lists_etag_answers_no_caller_without_the_scope(api: Api) -> None:
    """A 304 would tell a caller without a valid token or the scope that the list is
    unchanged since an ETag they got elsewhere: refused first, whatever the condition."""
    ArticleFactory()
    reader = UserFactory()
    etag = api.call("GET", "/articles", api.access_for(reader)).headers["ETag"]
    narrow = api.pat_for(reader, ["comments:write"])
    for token, status in ((None, 401), ("not-a-token", 401), (narrow, 403)):
        for method in ("GET", "HEAD"):
            resp = api.call(method, "/articles", token, headers={"If-None-Match": etag})
            assert resp.status_code == status, (token, method)
            assert "ETag" not in resp.headers
