"""PATCH bodies: a field that is omitted or null is left unchanged, and the document says so.

A client reading the OpenAPI document saw ``"bio": string | null`` and could only guess
whether null empties the bio or keeps it; guessing "empties" and finding it kept, or the
reverse, loses data either way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bastion.api.schemas import UNCHANGED
from bastion.extensions import db
from bastion.models import Article, User
from tests.api.conftest import Api
from tests.factories import ArticleFactory


def _accepts_null(schema: dict[str, Any]) -> bool:
    options = schema.get("anyOf", [schema])
    return any(option.get("type") == "null" for option in options)


def test_the_document_says_null_leaves_each_patch_field_unchanged(api: Api) -> None:
    doc = api.call("GET", "/openapi.json").get_json()
    models = doc["components"]["schemas"]
    patches = [op for item in doc["paths"].values() for method, op in item.items()
               if method == "patch"]
    assert patches
    for op in patches:
        assert "omitted or null is left unchanged" in op["description"], op["operationId"]
        ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        fields = models[ref.rsplit("/", 1)[-1]]["properties"]
        nullable = {name: spec for name, spec in fields.items() if _accepts_null(spec)}
        assert nullable, op["operationId"]
        for name, spec in nullable.items():
            assert UNCHANGED in spec.get("description", ""), (op["operationId"], name)


def test_null_leaves_the_profile_as_it_was(api: Api, make_user: Callable[..., User]) -> None:
    user = make_user("editor", display_name="Ada", bio="Writes about engines.")
    token = api.access_for(user)
    resp = api.call("PATCH", "/me", token, json={"display_name": None, "bio": None})
    assert resp.status_code == 200, resp.get_json()
    assert (resp.get_json()["display_name"], resp.get_json()["bio"]) == (
        "Ada", "Writes about engines.")
    # One field null, the other given: only the given one changes.
    resp = api.call("PATCH", "/me", token, json={"display_name": "Ada L.", "bio": None})
    assert resp.status_code == 200, resp.get_json()
    db.session.expire_all()
    stored = db.session.get(User, user.id)
    assert stored is not None
    assert (stored.display_name, stored.bio) == ("Ada L.", "Writes about engines.")


def test_null_leaves_the_article_as_it_was(api: Api, make_user: Callable[..., User]) -> None:
    author = make_user("editor")
    article = ArticleFactory(author=author, title="Kept", status="published")
    article_id, body = article.id, article.body_md
    token = api.access_for(author)
    resp = api.call("PATCH", f"/articles/{article_id}", token,
                    json={"title": None, "body": None, "publish": None})
    assert resp.status_code == 200, resp.get_json()
    db.session.expire_all()
    stored = db.session.get(Article, article_id)
    assert stored is not None
    assert (stored.title, stored.body_md, stored.status) == ("Kept", body, "published")
