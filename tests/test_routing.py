"""One URL per resource: ids in paths have a single spelling, the one url_for builds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask, url_for
from flask.testing import FlaskClient
from werkzeug.routing import IntegerConverter

from bastion import pagecache
from bastion.extensions import db
from bastion.models import Article, User
from bastion.routing import CanonicalIdConverter
from tests.factories import ArticleFactory, UserFactory
from tests.support.roles import client_for


def _in_digits(number: int, zero: int) -> str:
    """``number`` written with the ten digits that start at code point ``zero``."""
    return "".join(chr(zero + int(d)) for d in str(number))


# Each is read by int() as the same number; only the plain ASCII spelling names it.
SPELLINGS: dict[str, Callable[[int], str]] = {
    "full-width": lambda n: _in_digits(n, 0xFF10),
    "arabic-indic": lambda n: _in_digits(n, 0x0660),
    "devanagari": lambda n: _in_digits(n, 0x0966),
    "leading-zero": lambda n: f"0{n}",
    "leading-zeros": lambda n: f"000{n}",
    "plus-sign": lambda n: f"+{n}",
    "encoded-plus-sign": lambda n: f"%2B{n}",
}
NOT_FOUND = "There is nothing here."


def _api_token(user: User) -> str:
    from bastion.api import tokens

    return tokens.issue_pair(user).access_token


def _user(role: str = "viewer", **extra: Any) -> User:
    user: User = UserFactory(role_name=role, **extra)  # type: ignore[no-untyped-call,assignment]
    return user


def _article() -> int:
    article: Article = ArticleFactory()  # type: ignore[no-untyped-call,assignment]
    db.session.commit()
    return article.id


@pytest.mark.asvs("V1.1.1")
@pytest.mark.parametrize("spelling", SPELLINGS)
def test_a_page_answers_only_under_its_canonical_id(app: Flask, spelling: str) -> None:
    article_id = _article()
    client = app.test_client()
    assert client.get(f"/articles/{article_id}").status_code == 200
    resp = client.get(f"/articles/{SPELLINGS[spelling](article_id)}")
    assert resp.status_code == 404
    assert resp.mimetype == "text/html"
    assert NOT_FOUND in resp.get_data(as_text=True)


@pytest.mark.asvs("V1.1.1")
@pytest.mark.parametrize("spelling", SPELLINGS)
def test_an_api_resource_answers_only_under_its_canonical_id(app: Flask, spelling: str) -> None:
    article_id = _article()
    headers = {"Authorization": f"Bearer {_api_token(_user())}"}
    client = app.test_client()
    assert client.get(f"/api/v1/articles/{article_id}", headers=headers).status_code == 200
    resp = client.get(f"/api/v1/articles/{SPELLINGS[spelling](article_id)}", headers=headers)
    assert resp.status_code == 404
    assert resp.mimetype == "application/problem+json"
    assert resp.get_json()["status"] == 404


@pytest.mark.asvs("V1.1.1")
@pytest.mark.parametrize("spelling", SPELLINGS)
def test_an_admin_page_answers_only_under_its_canonical_id(app: Flask, spelling: str) -> None:
    """A proxy rule guarding ``/admin/users/7/...`` must not be sidestepped by ``07``."""
    target = _user("editor", two_factor=True)
    admin = client_for(app, _user("admin"))
    anonymous = app.test_client()
    canonical = f"/admin/users/{target.id}/2fa-reset"
    other = f"/admin/users/{SPELLINGS[spelling](target.id)}/2fa-reset"
    assert admin.get(canonical).status_code == 200
    assert anonymous.get(canonical).status_code == 302  # to the sign-in page
    for client in (admin, anonymous):
        resp = client.get(other)
        assert resp.status_code == 404
        assert NOT_FOUND in resp.get_data(as_text=True)


@pytest.mark.asvs("V1.1.1")
@pytest.mark.parametrize("path", ["/articles/0", "/api/v1/articles/0", "/admin/users/0/2fa-reset"])
def test_zero_names_nothing(app: Flask, path: str) -> None:
    client: FlaskClient = client_for(app, _user("admin"))
    assert client.get(path).status_code == 404


@pytest.mark.asvs("V1.1.1")
@pytest.mark.parametrize("number", [1, 7, 10, 100, 2**31 - 1])
def test_url_for_builds_the_spelling_the_router_reads_back(app: Flask, number: int) -> None:
    with app.test_request_context():
        for endpoint, name in [
            ("content.show_article", "article_id"),
            ("api.get_article", "article_id"),
            ("admin.reset_two_factor", "user_id"),
            ("content.edit_comment", "comment_id"),
        ]:
            values: dict[str, Any] = {name: number}
            path = url_for(endpoint, **values)
            assert path.endswith(str(number)) or f"/{number}/" in path
            adapter = app.url_map.bind("localhost")
            assert adapter.match(path, method="GET") == (endpoint, {name: number})


def test_every_int_route_uses_the_canonical_converter(app: Flask) -> None:
    """A rule binds its converter when added: one added before the swap keeps Werkzeug's."""
    converters = [
        (rule.rule, conv)
        for rule in app.url_map.iter_rules()
        for conv in rule._converters.values()
        if isinstance(conv, IntegerConverter)
    ]
    assert converters  # the site has id routes; this test must see them
    assert all(isinstance(conv, CanonicalIdConverter) for _, conv in converters), converters


@pytest.mark.asvs("V1.1.1", "V15.2.2")
def test_the_page_cache_keeps_no_copy_under_another_spelling(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(PUBLIC_PAGE_CACHE_SECONDS=60, RATELIMIT_ENABLED=False)
    with app.app_context():
        article_id = _article()
    client = app.test_client()
    canonical = client.get(f"/articles/{article_id}")
    assert canonical.status_code == 200
    store: pagecache._Store = app.extensions["bastion.page_cache"]
    assert len(store) == 1
    for spell in SPELLINGS.values():
        resp = client.get(f"/articles/{spell(article_id)}")
        assert resp.status_code == 404
        assert resp.get_data() != canonical.get_data()
    assert len(store) == 1
    ((endpoint, args, query),) = store.entries
    assert (endpoint, args, query) == ("content.show_article", repr([("article_id", article_id)]), "")


# Werkzeug merges runs of slashes by answering 308 to the merged path, and Flask returns
# routing redirects without the error handlers: an HTML page under the JSON API.
@pytest.mark.asvs("V4.1.2")
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1//me"),
        ("GET", "/api//v1/me"),
        ("GET", "/api/v1//articles/{id}"),
        ("DELETE", "/api/v1/articles//{id}"),
        ("POST", "/api/v1//auth/token"),
        ("GET", "/api//docs"),
    ],
)
def test_an_api_path_with_a_doubled_slash_is_a_problem_not_a_redirect(
    app: Flask, method: str, path: str
) -> None:
    """Another spelling of an API address names nothing, as for ids: a redirect would have
    the client send its Authorization header and body again to a URL it did not ask for."""
    article_id = _article()
    headers = {"Authorization": f"Bearer {_api_token(_user('admin'))}"}
    resp = app.test_client().open(path.format(id=article_id), method=method, headers=headers)
    assert resp.status_code == 404
    assert resp.mimetype == "application/problem+json"
    assert resp.get_json()["status"] == 404
    assert "Location" not in resp.headers
    assert db.session.get(Article, article_id) is not None


def test_a_page_with_a_doubled_slash_still_redirects_to_its_address(app: Flask) -> None:
    """Pages keep Werkzeug's redirect: a person's browser follows it to the one address."""
    resp = app.test_client().get("/auth//login")
    assert resp.status_code == 308
    assert resp.headers["Location"].endswith("/auth/login")
