"""Articles, comments and /me through the API: the site's rules, no IDOR, no mass assignment."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from bastion.extensions import db
from bastion.models import Article, Comment, User
from tests.api.conftest import Api
from tests.factories import ArticleFactory, CommentFactory


@pytest.mark.asvs("V8.2.2", "V8.3.1")
def test_patch_of_another_editors_article_is_refused_and_changes_nothing(
    api: Api, make_user: Callable[..., User]
) -> None:
    alice, bob = make_user("editor"), make_user("editor")
    published = ArticleFactory(author=alice, title="Alice's")
    draft = ArticleFactory(author=alice, status="draft", published_at=None, title="Secret draft")
    token = api.access_for(bob)
    assert (
        api.call("PATCH", f"/articles/{published.id}", token, json={"title": "Bob's"}).status_code
        == 403
    )
    assert api.call("DELETE", f"/articles/{published.id}", token).status_code == 403
    # A draft of someone else does not even exist for Bob.
    for method in ("GET", "PATCH", "DELETE"):
        resp = api.call(
            method,
            f"/articles/{draft.id}",
            token,
            json={"title": "x"} if method == "PATCH" else None,
        )
        assert resp.status_code == 404, method
    db.session.expire_all()
    assert db.session.get(Article, published.id).title == "Alice's"  # type: ignore[union-attr]
    assert db.session.get(Article, draft.id) is not None


@pytest.mark.asvs("V8.2.1")
def test_viewers_cannot_write_articles(api: Api, make_user: Callable[..., User]) -> None:
    viewer = make_user("viewer")
    resp = api.call("POST", "/articles", api.access_for(viewer), json={"title": "T", "body": "B"})
    assert resp.status_code == 403
    assert db.session.query(Article).count() == 0


@pytest.mark.asvs("V15.3.3", "V2.2.1")
@pytest.mark.parametrize(
    "field",
    [
        {"role": "admin"},
        {"id": 99},
        {"email": "x@example.org"},
        {"password_hash": "x"},
        {"username": "root"},
        {"totp_secret": "A"},
    ],
)
def test_patch_me_refuses_read_only_fields(
    api: Api, make_user: Callable[..., User], field: dict[str, object]
) -> None:
    user = make_user("viewer")
    token = api.access_for(user)
    resp = api.call("PATCH", "/me", token, json={"display_name": "New", **field})
    assert resp.status_code == 422
    assert resp.mimetype == "application/problem+json"
    assert resp.get_json()["errors"][0]["type"] == "extra_forbidden"
    db.session.refresh(user)
    assert user.role_name == "viewer"
    assert user.display_name == ""


def test_patch_me_changes_the_profile(api: Api, make_user: Callable[..., User]) -> None:
    user = make_user()
    resp = api.call(
        "PATCH", "/me", api.access_for(user), json={"display_name": " Ada ", "bio": "Hi"}
    )
    assert resp.status_code == 200
    assert resp.get_json()["display_name"] == "Ada"


@pytest.mark.asvs("V2.2.1", "V2.2.2")
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"display_name": "Ada\u202egnp.exe"}, "display_name"),  # bidi override: a format char
        ({"display_name": "x" * 81}, "display_name"),
        ({"bio": "x" * 2001}, "bio"),
    ],
)
def test_patch_me_follows_the_profile_rules_of_the_account_page(
    api: Api, make_user: Callable[..., User], body: dict[str, str], field: str
) -> None:
    from bastion.profiles.services import clean_profile

    user = make_user(display_name="Before", bio="Old bio")
    resp = api.call("PATCH", "/me", api.access_for(user), json=body)
    assert resp.status_code == 422
    assert resp.get_json()["errors"][0]["loc"][-1] == field
    with pytest.raises(ValueError):  # the same rules refuse it on the site
        clean_profile(body.get("display_name", ""), body.get("bio", ""))
    db.session.refresh(user)
    assert (user.display_name, user.bio) == ("Before", "Old bio")


def test_patch_me_keeps_the_field_it_was_not_given(
    api: Api, make_user: Callable[..., User]
) -> None:
    user = make_user(display_name="Ada", bio="Old")
    resp = api.call("PATCH", "/me", api.access_for(user), json={"bio": "New\r\nline"})
    assert resp.status_code == 200
    assert resp.get_json()["display_name"] == "Ada"
    assert resp.get_json()["bio"] == "New\nline"  # normalised like the account form's input


@pytest.mark.asvs("V15.3.3")
@pytest.mark.parametrize(
    "field", [{"author_id": 1}, {"status": "published"}, {"id": 5}, {"body_html": "<script>"}]
)
def test_article_read_only_fields_are_refused(
    api: Api, make_user: Callable[..., User], field: dict[str, object]
) -> None:
    editor = make_user("editor")
    article = ArticleFactory(author=editor, title="Same")
    token = api.access_for(editor)
    assert api.call("PATCH", f"/articles/{article.id}", token, json=field).status_code == 422
    assert (
        api.call("POST", "/articles", token, json={"title": "T", "body": "B", **field}).status_code
        == 422
    )
    assert db.session.query(Article).count() == 1


def test_article_life_cycle(api: Api, make_user: Callable[..., User]) -> None:
    editor = make_user("editor")
    token = api.access_for(editor)
    created = api.call(
        "POST", "/articles", token, json={"title": "Hello", "body": "<script>x</script>**b**"}
    )
    assert created.status_code == 201
    art = created.get_json()
    assert art["status"] == "draft"
    assert "<script>" not in art["body_html"]
    mine = api.call("GET", "/articles?mine=true", token).get_json()
    assert [a["id"] for a in mine["items"]] == [art["id"]]
    assert api.call("GET", "/articles", token).get_json()["total"] == 0  # drafts are not listed
    published = api.call(
        "PATCH", f"/articles/{art['id']}", token, json={"publish": True}
    ).get_json()
    assert published["status"] == "published"
    comment = api.call("POST", f"/articles/{art['id']}/comments", token, json={"body": "First"})
    assert comment.status_code == 201
    comments = api.call("GET", f"/articles/{art['id']}/comments", token).get_json()
    assert comments["items"][0]["body"] == "First"
    assert api.call("DELETE", f"/comments/{comment.get_json()['id']}", token).status_code == 204
    assert api.call("DELETE", f"/articles/{art['id']}", token).status_code == 204
    assert api.call("GET", f"/articles/{art['id']}", token).status_code == 404


@pytest.mark.asvs("V8.2.2")
def test_viewer_cannot_delete_another_users_comment(
    api: Api, make_user: Callable[..., User]
) -> None:
    comment = CommentFactory()
    viewer = make_user()
    assert api.call("DELETE", f"/comments/{comment.id}", api.access_for(viewer)).status_code == 403


@pytest.mark.asvs("V2.2.1", "V15.3.7")
def test_pagination_is_bounded(api: Api, make_user: Callable[..., User]) -> None:
    user = make_user()
    ArticleFactory.create_batch(3)
    token = api.access_for(user)
    page = api.call("GET", "/articles?per_page=2&page=2", token).get_json()
    assert (page["page"], page["per_page"], page["total"], page["pages"], len(page["items"])) == (
        2,
        2,
        3,
        2,
        1,
    )
    for bad in ("per_page=101", "per_page=0", "page=0", "page=x", "nope=1", "page=1&page=2"):
        resp = api.call("GET", f"/articles?{bad}", token)
        assert resp.status_code == 422, bad
        assert resp.mimetype == "application/problem+json"


@pytest.mark.asvs("V2.2.1")
@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("page=99999999999999999999", "less than or equal to 10000"),
        ("page=10001", "less than or equal to 10000"),
        ("per_page=99999999999", "less than or equal to 100"),
        ("page=1e3", "digits only"),
        ("page=0000000000001", "at most 9 digits"),
    ],
)
def test_a_page_number_out_of_range_is_refused_for_what_it_is(
    api: Api, make_user: Callable[..., User], query: str, message: str
) -> None:
    """``page=99999999999999999999`` was refused as "must be a whole number written with
    digits only", which it is."""
    resp = api.call("GET", f"/articles?{query}", api.access_for(make_user()))
    assert resp.status_code == 422 and resp.mimetype == "application/problem+json"
    assert message in resp.get_json()["errors"][0]["msg"]


def _keys(node: object) -> set[str]:
    if isinstance(node, dict):
        return set(node) | set().union(*(_keys(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_keys(v) for v in node))
    return set()


# Values that must never appear in any API response.
FORBIDDEN_KEYS = {"password_hash", "totp_secret", "token_hash", "totp_last_step"}


@pytest.mark.asvs("V8.2.3", "V15.3.1")
def test_no_response_leaks_secrets_or_other_users_emails(
    api: Api, make_user: Callable[..., User]
) -> None:
    from bastion.models import ApiToken

    me = make_user("editor")
    other = make_user("editor", email="other-person@example.org")
    art = ArticleFactory(author=other)
    CommentFactory(article=art, author=other)
    access = api.access_for(me)
    pat = api.pat_for(me, ["articles:read"], access)
    hashes = [me.password_hash, *(t.token_hash for t in db.session.query(ApiToken))]
    bodies = [
        api.call("GET", "/me", access),
        api.call("GET", "/articles", access),
        api.call("GET", f"/articles/{art.id}", access),
        api.call("GET", f"/articles/{art.id}/comments", access),
        api.call("GET", "/tokens", access),
        api.call("GET", "/articles", pat),
        api.call("PATCH", "/me", access, json={"bio": "x"}),
    ]
    for resp in bodies:
        assert resp.status_code == 200
        text = resp.get_data(as_text=True)
        assert other.email not in text
        assert not any(h in text for h in hashes)
        keys = _keys(json.loads(text))
        assert not keys & FORBIDDEN_KEYS, keys & FORBIDDEN_KEYS


@pytest.mark.asvs("V8.2.3")
def test_only_a_sign_in_token_sees_the_account_email(
    api: Api, make_user: Callable[..., User]
) -> None:
    """A personal access token, made for a script, has no need of the address the account
    signs in and resets its password with; whoever steals one does not learn it either."""
    me = make_user("admin", email="owner-address@example.org")
    access = api.access_for(me)
    assert api.call("GET", "/me", access).get_json()["email"] == me.email
    for scopes in (
        ["articles:read"],
        ["articles:read", "articles:write", "comments:write", "admin"],
    ):
        resp = api.call("GET", "/me", api.pat_for(me, scopes, access))
        assert resp.status_code == 200
        assert resp.get_json()["email"] is None
        assert me.email not in resp.get_data(as_text=True)


@pytest.mark.asvs("V16.5.3")
def test_a_refused_update_leaves_the_article_unchanged(
    api: Api, make_user: Callable[..., User]
) -> None:
    editor = make_user("editor")
    article = ArticleFactory(author=editor, title="Before", body_md="Body")
    token = api.access_for(editor)
    # The schema accepts this body (100,000 characters), but NFC normalisation doubles it
    # (U+0958 becomes two characters), so the service refuses it after setting the title.
    body = "\u0958" * 100_000
    resp = api.call(
        "PATCH", f"/articles/{article.id}", token, json={"title": "After", "body": body}
    )
    assert resp.status_code == 422
    assert resp.get_json()["errors"][0]["loc"] == ["body"]
    api.call("PATCH", "/me", token, json={"bio": "x"})  # a later commit must not carry it
    db.session.expire_all()
    assert db.session.get(Article, article.id).title == "Before"  # type: ignore[union-attr]


def test_a_comment_on_a_draft_is_refused_with_the_reason(
    api: Api, make_user: Callable[..., User]
) -> None:
    """The author (and an admin) can see the draft and holds comments:write, so the generic
    "You are not allowed to do that." left them guessing at their token's scopes."""
    author = make_user("editor")
    draft = ArticleFactory(author=author, status="draft", published_at=None)
    for user in (author, make_user("admin")):
        resp = api.call(
            "POST", f"/articles/{draft.id}/comments", api.access_for(user), json={"body": "Hi"}
        )
        assert resp.status_code == 403
        assert resp.mimetype == "application/problem+json"
        assert "published" in resp.get_json()["detail"]
    assert db.session.query(Comment).count() == 0
