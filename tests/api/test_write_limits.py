"""API article and comment writes count against the account, and the per-client API limit
still counts every call, refused tokens included."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask

from bastion.extensions import limiter
from tests.api.conftest import Api, bearer
from tests.factories import ArticleFactory, UserFactory
from tests.support.roles import client_for, post


@pytest.mark.asvs("V2.4.1", "V15.2.2")
def test_article_writes_are_limited_per_account(
    app: Flask, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(app.config, "ARTICLE_WRITE_RATE_LIMIT", "2 per minute")
    author, other = UserFactory(role_name="editor"), UserFactory(role_name="editor")
    token = api.access_for(author)
    created = api.call("POST", "/articles", token, json={"title": "T", "body": "one"})
    assert created.status_code == 201
    path = f"/articles/{created.get_json()['id']}"
    assert api.call("PATCH", path, token, json={"body": "two"}).status_code == 200
    # A personal access token of the same account spends the same budget.
    pat = api.pat_for(author, ["articles:read", "articles:write"])
    refused = api.call("PATCH", path, pat, json={"body": "three"})
    assert refused.status_code == 429
    assert refused.mimetype == "application/problem+json"
    assert refused.get_json()["detail"] == "2 per 1 minute"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["X-RateLimit-Limit"] == "2"
    assert api.call("GET", path, token).get_json()["body"] == "two"
    # Another account, from the same address, writes on.
    theirs = api.call("POST", "/articles", api.access_for(other), json={"title": "U", "body": "x"})
    assert theirs.status_code == 201


@pytest.mark.asvs("V2.4.1", "V15.2.2")
def test_pages_and_api_share_the_article_budget(
    app: Flask, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(app.config, "ARTICLE_WRITE_RATE_LIMIT", "2 per minute")
    article = ArticleFactory()
    page = client_for(app, article.author)
    form = {"title": article.title, "body": "from the page"}
    assert post(page, f"/articles/{article.id}/edit", form).status_code == 302
    token = api.access_for(article.author)
    assert api.call("PATCH", f"/articles/{article.id}", token, json={"body": "b"}).status_code == 200
    assert api.call("PATCH", f"/articles/{article.id}", token, json={"body": "c"}).status_code == 429
    assert post(page, f"/articles/{article.id}/edit", form).status_code == 429


@pytest.mark.asvs("V2.4.1")
def test_comments_are_limited_per_account(
    app: Flask, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(app.config, "COMMENT_WRITE_RATE_LIMIT", "1 per minute")
    article = ArticleFactory(status="published")
    path = f"/articles/{article.id}/comments"
    first, second = api.access_for(UserFactory()), api.access_for(UserFactory())
    assert api.call("POST", path, first, json={"body": "a"}).status_code == 201
    refused = api.call("POST", path, first, json={"body": "b"})
    assert refused.status_code == 429 and refused.headers["Retry-After"]
    assert api.call("POST", path, second, json={"body": "c"}).status_code == 201


@pytest.mark.asvs("V2.4.1")
def test_refused_tokens_still_count_against_the_client_limit(
    make_app: Callable[..., Flask],
) -> None:
    """The account's budget is spent after authentication; the per-client API limit must
    stay before it, or calls with bad tokens to these routes would go uncounted."""
    app = make_app(API_RATE_LIMIT="3 per minute")
    with app.app_context():
        limiter.reset()
    client = app.test_client()
    calls = [
        ("PATCH", "/api/v1/articles/1", {"body": "x"}),
        ("POST", "/api/v1/articles", {"title": "t", "body": "x"}),
        ("POST", "/api/v1/articles/1/comments", {"body": "x"}),
    ]
    for i, (method, path, body) in enumerate(calls):
        address = {"REMOTE_ADDR": f"203.0.113.{i + 1}"}
        statuses = [
            client.open(path, method=method, json=body, headers=bearer("bst_guess"),
                        environ_base=address).status_code
            for _ in range(4)
        ]
        assert statuses == [401, 401, 401, 429], path


def _article_lister(make_app: Callable[..., Flask], limit: str) -> Callable[[str], int]:
    """``GET /api/v1/articles?<query>`` with a signed-in token on a new app; the status."""
    app = make_app(API_RATE_LIMIT=limit)
    with app.app_context():
        token = Api(app.test_client()).access_for(UserFactory())
    client = app.test_client()
    return lambda query: client.get(
        f"/api/v1/articles?{query}", headers=bearer(token)
    ).status_code


@pytest.mark.asvs("V2.4.1")
def test_a_long_page_of_articles_counts_as_several_calls(
    make_app: Callable[..., Flask],
) -> None:
    """A page of 100 articles can be tens of megabytes; counted as one call, the API limit
    let a client ask for five times the work of the default page at the same rate."""
    get = _article_lister(make_app, "10 per minute")
    assert get("per_page=100") == 200  # 5 of 10
    assert get("per_page=21") == 200  # 2: each started 20
    assert get("per_page=0000060") == 200  # 3: written the way the query model reads it
    assert get("per_page=21") == 429  # 2 more would make 12
    assert get("per_page=20") == 429  # the window is full: 1 more would make 11
    # What the model refuses counts once; a short page counts once.
    get = _article_lister(make_app, "3 per minute")
    assert get("per_page=x100") == 422
    assert get("per_page=1") == 200
    assert get("") == 200
    assert get("") == 429
