"""Personal access tokens: shown once, stored hashed, scoped, expiring, revocable."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from unittest.mock import ANY

import pytest
from flask import Flask
from sqlalchemy import select, update

from bastion.extensions import db
from bastion.models import ApiToken, Article, Comment, User, utcnow
from bastion.security.tokens import token_hash
from tests.api.conftest import Api
from tests.factories import PASSWORD, ArticleFactory, CommentFactory, UserFactory


@pytest.mark.asvs("V13.3.1")
def test_token_is_prefixed_random_and_stored_only_as_a_hash(
    api: Api, make_user: Callable[..., User]
) -> None:
    user = make_user("editor")
    token = api.pat_via_api(user, ["articles:read"], api.access_for(user))
    assert token.startswith("bst_")
    assert len(token) >= 4 + 43
    row = db.session.scalar(select(ApiToken).where(ApiToken.user_id == user.id))
    assert row is not None
    assert row.token_hash == token_hash(token)
    assert token not in row.hint + row.name
    listed = api.call("GET", "/tokens", api.access_for(user)).get_json()["items"]
    assert token not in str(listed)
    assert listed[0]["hint"] == token[:8]


@pytest.mark.asvs("V7.5.1")
def test_the_owner_is_mailed_when_a_token_is_created(
    app: Flask, api: Api, make_user: Callable[..., User]
) -> None:
    # A stolen session that is still fresh could mint a token outliving it, unnoticed.
    from tests.support.accounts import Outbox

    user = make_user("editor")
    outbox = Outbox(app)
    token = api.pat_via_api(user, ["articles:read"], api.access_for(user))

    (mail,) = outbox.to(user.email)
    text = mail.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert "personal access token was created" in text
    assert token[:8] in text and "articles:read" in text
    assert token not in mail.as_string()  # the secret itself is never mailed
    assert "/account/tokens" in text


@pytest.mark.asvs("V7.5.1")
def test_creating_a_token_needs_the_password_again(
    api: Api, make_user: Callable[..., User]
) -> None:
    user = make_user("editor")
    access = api.access_for(user)
    body = {"name": "ci", "scopes": ["articles:read"], "password": "not the password"}
    resp = api.call("POST", "/tokens", access, json=body)
    assert resp.status_code == 403
    without = api.call("POST", "/tokens", access, json={"name": "ci", "scopes": ["articles:read"]})
    assert without.status_code == 422
    assert db.session.scalar(select(ApiToken)) is None


def test_admin_token_creation_needs_the_otp_too(api: Api, make_user: Callable[..., User]) -> None:
    admin = make_user("admin")
    access = api.access_for(admin)
    body = {"name": "ops", "scopes": ["admin"], "password": PASSWORD}
    assert api.call("POST", "/tokens", access, json=body).status_code == 403
    assert api.pat_via_api(admin, ["admin"], access).startswith("bst_")


@pytest.mark.asvs("V8.2.1")
def test_a_token_cannot_carry_more_than_its_owners_role(
    api: Api, make_user: Callable[..., User]
) -> None:
    viewer = make_user("viewer")
    body = {"name": "x", "scopes": ["articles:write"], "password": PASSWORD}
    resp = api.call("POST", "/tokens", api.access_for(viewer), json=body)
    assert resp.status_code == 422
    assert "articles:write" in resp.get_json()["detail"]


@pytest.mark.asvs("V2.2.1")
def test_expiry_follows_the_configured_default_and_maximum(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(PAT_DEFAULT_DAYS=7, PAT_MAX_DAYS=20)
    with app.app_context():
        api = Api(app.test_client())
        user = UserFactory(role_name="editor")
        access = api.access_for(user)
        body = {"name": "ci", "scopes": ["articles:read"], "password": PASSWORD}

        made = api.call("POST", "/tokens", access, json=body)
        assert made.status_code == 201, made.get_json()
        row = db.session.get(ApiToken, made.get_json()["id"])
        assert row is not None
        assert abs(row.expires_at - row.created_at - timedelta(days=7)) < timedelta(minutes=1)

        over = api.call("POST", "/tokens", access, json={**body, "expires_in_days": 21})
        assert over.status_code == 422
        assert "20 days" in over.get_json()["detail"]
        longest = api.call("POST", "/tokens", access, json={**body, "expires_in_days": 20})
        assert longest.status_code == 201, longest.get_json()

        # The document states this deployment's limits, not the built-in ones.
        doc = api.call("GET", "/openapi.json").get_json()
        days = doc["components"]["schemas"]["PatCreate"]["properties"]["expires_in_days"]
        assert "expires_in_days" not in doc["components"]["schemas"]["PatCreate"]["required"]
        assert days.get("default") is None
        (number,) = [s for s in days["anyOf"] if s.get("type") == "integer"]
        assert (number["minimum"], number["maximum"]) == (1, 20)
        assert "7 days" in days["description"]
        db.session.remove()


def test_personal_tokens_cannot_manage_tokens_or_the_profile(
    api: Api, make_user: Callable[..., User]
) -> None:
    user = make_user("admin")
    pat = api.pat_for(user, ["articles:read", "articles:write", "comments:write", "admin"])
    assert api.call("GET", "/tokens", pat).status_code == 403
    body = {"name": "x", "scopes": ["articles:read"], "password": PASSWORD}
    assert api.call("POST", "/tokens", pat, json=body).status_code == 403
    assert api.call("PATCH", "/me", pat, json={"bio": "pwned"}).status_code == 403
    assert api.call("GET", "/me", pat).status_code == 200


# Scope matrix: (method, path template, needed scope). Paths use {a} (own draft article)
# and {c} (own comment); each request is tried with every single-scope token.
MATRIX = [
    ("GET", "/articles", "articles:read"),
    ("GET", "/articles/{a}", "articles:read"),
    ("GET", "/articles/{p}/comments", "articles:read"),
    ("POST", "/articles", "articles:write"),
    ("PATCH", "/articles/{a}", "articles:write"),
    ("DELETE", "/articles/{a}", "articles:write"),
    ("POST", "/articles/{p}/comments", "comments:write"),
    ("DELETE", "/comments/{c}", "comments:write"),
]
BODIES = {
    ("POST", "/articles"): {"title": "T", "body": "B"},
    ("PATCH", "/articles/{a}"): {"title": "T2"},
    ("POST", "/articles/{p}/comments"): {"body": "hi"},
}


@pytest.mark.asvs("V8.2.1", "V8.3.1")
def test_scope_matrix(api: Api, make_user: Callable[..., User]) -> None:
    editor = make_user("editor")
    access = api.access_for(editor)
    tokens = {
        s: api.pat_for(editor, [s], access)
        for s in ("articles:read", "articles:write", "comments:write")
    }
    for method, template, needed in MATRIX:
        for scope, pat in tokens.items():
            own = ArticleFactory(author=editor, status="draft", published_at=None)
            published = ArticleFactory(author=editor)
            comment = CommentFactory(article=published, author=editor)
            path = template.format(a=own.id, p=published.id, c=comment.id)
            resp = api.call(method, path, pat, json=BODIES.get((method, template)))
            if scope == needed:
                assert resp.status_code < 300, (method, path, scope, resp.get_json())
            else:
                assert resp.status_code == 403, (method, path, scope, resp.status_code)
                assert needed in resp.get_json()["detail"]


def test_without_admin_scope_an_admin_token_cannot_touch_others_content(
    api: Api, make_user: Callable[..., User]
) -> None:
    admin = make_user("admin")
    access = api.access_for(admin)
    narrow = api.pat_for(admin, ["articles:read", "articles:write", "comments:write"], access)
    article = ArticleFactory()
    comment = CommentFactory(article=article)
    assert (
        api.call("PATCH", f"/articles/{article.id}", narrow, json={"title": "x"}).status_code == 403
    )
    assert api.call("DELETE", f"/comments/{comment.id}", narrow).status_code == 403
    draft = ArticleFactory(status="draft", published_at=None)
    assert api.call("GET", f"/articles/{draft.id}", narrow).status_code == 404
    # The JWT of the same admin carries the admin scope and may moderate.
    assert api.call("DELETE", f"/comments/{comment.id}", access).status_code == 204
    assert api.call("GET", f"/articles/{draft.id}", access).status_code == 200
    db.session.expire_all()
    assert db.session.get(Article, article.id).title != "x"  # type: ignore[union-attr]


@pytest.mark.asvs("V16.3.2")
def test_api_refusals_to_change_others_content_are_audited(
    api: Api, make_user: Callable[..., User]
) -> None:
    """A 403 for another user's article or comment is an authorization failure: the API
    audits it as the pages do (``authz.require``), so probing by token shows in the trail."""
    from bastion.models import AuditEvent

    editor = make_user("editor")
    access = api.access_for(editor)
    article = ArticleFactory()
    comment = CommentFactory(article=article)
    edit = api.call("PATCH", f"/articles/{article.id}", access, json={"title": "x"})
    assert edit.status_code == 403
    assert api.call("DELETE", f"/articles/{article.id}", access).status_code == 403
    assert api.call("DELETE", f"/comments/{comment.id}", access).status_code == 403
    denied = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "authz.denied"))
    assert [(row.actor_id, row.details) for row in denied] == [
        (editor.id, {"hidden": False, "what": f"edit article {article.id}"}),
        (editor.id, {"hidden": False, "what": f"delete article {article.id}"}),
        (editor.id, {"hidden": False, "what": f"delete comment {comment.id}"}),
    ]


@pytest.mark.asvs("V8.2.2")
def test_without_admin_scope_comments_on_others_drafts_look_absent(
    api: Api, make_user: Callable[..., User]
) -> None:
    # The narrowed token cannot read the draft, so it must not learn, by a 403 instead of
    # a 404, which comment ids sit on drafts it cannot see.
    admin = make_user("admin")
    narrow = api.pat_for(admin, ["comments:write"])
    draft = ArticleFactory(status="draft", published_at=None)
    on_draft = CommentFactory(article=draft)
    missing = api.call("DELETE", "/comments/2147483647", narrow)
    resp = api.call("DELETE", f"/comments/{on_draft.id}", narrow)
    assert (resp.status_code, resp.get_json()) == (404, {**missing.get_json(), "request_id": ANY})
    assert db.session.get(Comment, on_draft.id) is not None


@pytest.mark.asvs("V7.4.1")
def test_revoked_and_expired_tokens_are_refused(api: Api, make_user: Callable[..., User]) -> None:
    user = make_user("editor")
    access = api.access_for(user)
    pat = api.pat_for(user, ["articles:read"], access)
    assert api.call("GET", "/articles", pat).status_code == 200
    token_id = api.call("GET", "/tokens", access).get_json()["items"][0]["id"]
    assert api.call("DELETE", f"/tokens/{token_id}", access).status_code == 204
    assert api.call("GET", "/articles", pat).status_code == 401

    other = api.pat_for(user, ["articles:read"], access)
    row = db.session.scalar(select(ApiToken).where(ApiToken.token_hash == token_hash(other)))
    assert row is not None
    row.expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    assert api.call("GET", "/articles", other).status_code == 401


@pytest.mark.asvs("V8.2.2")
def test_cannot_revoke_someone_elses_token(api: Api, make_user: Callable[..., User]) -> None:
    alice, bob = make_user("editor"), make_user("editor")
    pat = api.pat_for(alice, ["articles:read"])
    alice_token = db.session.scalar(select(ApiToken).where(ApiToken.user_id == alice.id))
    assert alice_token is not None
    assert api.call("DELETE", f"/tokens/{alice_token.id}", api.access_for(bob)).status_code == 404
    assert api.call("GET", "/articles", pat).status_code == 200


@pytest.mark.asvs("V16.3.2", "V8.2.2")
def test_revoking_someone_elses_token_looks_absent_and_is_audited(
    api: Api, make_user: Callable[..., User]
) -> None:
    """Another account's token id answers the 404 of an unknown id, and the refusal is
    audited like every change refused on something hidden (an article, a comment, an
    image): it was a silent 404, so ids could be tried one after another unseen. An id
    that never existed is nobody's: nothing to audit."""
    from bastion.models import AuditEvent

    alice, bob = make_user("editor"), make_user("editor")
    api.pat_for(alice, ["articles:read"])
    token_id = db.session.scalar(select(ApiToken.id).where(ApiToken.user_id == alice.id))
    bob_access = api.access_for(bob)
    hidden = api.call("DELETE", f"/tokens/{token_id}", bob_access)
    missing = api.call("DELETE", "/tokens/987654", bob_access)
    assert hidden.status_code == missing.status_code == 404
    assert hidden.get_json() == {**missing.get_json(), "request_id": ANY}
    denied = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "authz.denied"))
    assert [(row.actor_id, row.details) for row in denied] == [
        (bob.id, {"hidden": True, "what": f"revoke token {token_id}"})
    ]
    assert db.session.scalar(select(ApiToken.revoked_at).where(ApiToken.id == token_id)) is None


def test_last_used_is_recorded(api: Api, make_user: Callable[..., User]) -> None:
    user = make_user("editor")
    pat = api.pat_for(user, ["articles:read"])
    api.call("GET", "/articles", pat)
    row = db.session.scalar(select(ApiToken))
    db.session.refresh(row)
    assert row is not None
    assert row.last_used_at is not None


def test_disabled_owner_disables_the_token(api: Api, make_user: Callable[..., User]) -> None:
    user = make_user("editor")
    pat = api.pat_for(user, ["articles:read"])
    user.disabled_at = utcnow()
    db.session.commit()
    assert api.call("GET", "/articles", pat).status_code == 401


NEW_PASSWORD = "lilac harbour quietly 2031"


def _change_password(app: Flask, user: User) -> None:
    from bastion.account.services import change_password

    with app.test_request_context():
        change_password(user, PASSWORD, NEW_PASSWORD)


def _reset_password(app: Flask, user: User) -> None:
    from bastion.auth import links, registration

    with app.test_request_context():
        assert registration.reset_password(links.make_token("reset", user), NEW_PASSWORD)


def _disable_then_enable(app: Flask, user: User) -> None:
    from bastion.admin.services import set_disabled

    set_disabled(None, user, True)
    set_disabled(None, user, False)  # coming back does not bring the tokens back


def _sign_out_everywhere(app: Flask, user: User) -> None:
    from bastion.admin.services import sign_out_everywhere

    sign_out_everywhere(None, user)


@pytest.mark.asvs("V7.4.2", "V7.4.3", "V7.4.5")
@pytest.mark.parametrize(
    "lock_out",
    [_change_password, _reset_password, _disable_then_enable, _sign_out_everywhere],
    ids=["password change", "password reset", "disable", "sign out everywhere"],
)
def test_locking_someone_out_ends_the_personal_tokens_they_could_have_made(
    app: Flask, api: Api, make_user: Callable[..., User], lock_out: Callable[[Flask, User], None]
) -> None:
    """Whoever had the password or a signed-in browser could make a token: the owner's
    password change, a reset, a disabled account or "sign out everywhere" must end it."""
    user = make_user("editor")
    pat = api.pat_for(user, ["articles:read"])
    assert api.call("GET", "/articles", pat).status_code == 200
    lock_out(app, user)
    assert api.call("GET", "/articles", pat).status_code == 401
    assert db.session.scalar(select(ApiToken.revoked_at).where(ApiToken.user_id == user.id))


@pytest.mark.asvs("V16.3.2", "V8.2.2")
def test_changes_refused_on_hidden_drafts_are_audited_and_look_absent(
    api: Api, make_user: Callable[..., User]
) -> None:
    """As on the pages: probing drafts with changes leaves a trace, reads do not."""
    from bastion.models import AuditEvent

    editor = api.access_for(make_user("editor"))
    narrow = api.pat_for(make_user("admin"), ["articles:read", "comments:write"])
    draft = ArticleFactory(status="draft", published_at=None)
    comment = CommentFactory(article=draft, author=draft.author)
    attempts = [
        (editor, "PATCH", f"/articles/{draft.id}", {"title": "x"}, f"patch article {draft.id}"),
        (editor, "DELETE", f"/articles/{draft.id}", None, f"delete article {draft.id}"),
        (editor, "POST", f"/articles/{draft.id}/comments", {"body": "hi"},
         f"post article {draft.id}"),
        (editor, "DELETE", f"/comments/{comment.id}", None, f"delete comment {comment.id}"),
        (narrow, "DELETE", f"/comments/{comment.id}", None, f"delete comment {comment.id}"),
    ]
    for token, method, path, body, _ in attempts:
        hidden = api.call(method, path, token, json=body)
        missing = api.call(method, path.replace(f"/{draft.id}", "/987654").replace(
            f"/{comment.id}", "/987654"), token, json=body)
        assert hidden.status_code == missing.status_code == 404
        assert hidden.get_json() == {**missing.get_json(), "request_id": ANY}
    assert api.call("GET", f"/articles/{draft.id}", editor).status_code == 404
    rows = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "authz.denied"))
    assert [row.details for row in rows] == [
        {"hidden": True, "what": what} for *_, what in attempts
    ]
    assert db.session.get(Comment, comment.id) is not None


@pytest.mark.asvs("V8.2.1", "V8.3.1")
def test_a_demoted_editors_token_is_revoked_and_the_role_still_decides(
    api: Api, make_user: Callable[..., User]
) -> None:
    """A demotion revokes a token holding a scope the new role cannot grant: kept, it came
    back whole with a later promotion. A role lowered behind the service's back (an
    operator's UPDATE) is still caught on each use: the role is checked every time, and the
    token can do only what the role allows now (its row keeps what it was made with)."""
    from bastion.admin.services import set_role
    from bastion.models import Role

    editor = make_user("editor")
    pat = api.pat_for(editor, ["articles:read", "articles:write"])
    assert api.call("POST", "/articles", pat, json={"title": "T", "body": "B"}).status_code == 201
    set_role(None, editor, "viewer")
    assert api.call("POST", "/articles", pat, json={"title": "T2", "body": "B"}).status_code == 401
    set_role(None, editor, "editor")
    assert api.call("GET", "/me", pat).status_code == 401  # not back with the promotion

    other = make_user("editor")
    kept = api.pat_for(other, ["articles:read", "articles:write"])
    viewer = db.session.scalar(select(Role.id).where(Role.name == "viewer"))
    db.session.execute(update(User).where(User.id == other.id).values(role_id=viewer))
    db.session.commit()
    db.session.expire_all()  # requests here share this session; each has its own in service
    resp = api.call("POST", "/articles", kept, json={"title": "T3", "body": "B"})
    assert resp.status_code == 403 and "articles:write" in resp.get_json()["detail"]
    assert api.call("GET", "/me", kept).get_json()["scopes"] == ["articles:read"]
    stored = db.session.scalar(select(ApiToken.scopes).where(ApiToken.user_id == other.id))
    assert stored is not None and "articles:write" in stored.split()


def test_every_place_that_spells_the_scopes_names_the_same_ones() -> None:
    """A scope added to SCOPES but not to the schema's type made `GET /api/v1/tokens`
    answer 500 to the owner of a token that held it; the token page needs its help text."""
    from typing import get_args

    from bastion.api.pats import ROLE_SCOPES, SCOPES
    from bastion.api.schemas import PatCreate, Scope
    from bastion.api.web.forms import SCOPE_HELP

    assert set(get_args(Scope)) == set(SCOPES) == set(SCOPE_HELP)
    assert ROLE_SCOPES["admin"] == frozenset(SCOPES)
    assert PatCreate.model_json_schema()["properties"]["scopes"]["maxItems"] == len(SCOPES)


def test_a_token_revoked_twice_at_once_is_revoked_and_audited_once(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two revocations (a double click on the account page, a retried DELETE) that both
    read the token as live each wrote a revocation time and a "token.revoked" event: the
    trail then said the owner ended it twice, and its end moved to the later time."""
    import threading

    from bastion.api import pats
    from bastion.models import AuditEvent
    from tests.support.races import race

    owner = UserFactory(role_name="editor")
    token_id, owner_id = pats.create(owner, name="t", scopes=["articles:read"]).record.id, owner.id
    db.session.remove()
    both_read = threading.Barrier(2)
    real_end = pats._end

    def end_after_both_read(record: ApiToken) -> None:
        both_read.wait(5)  # both loaded the token while it was still live
        real_end(record)

    monkeypatch.setattr(pats, "_end", end_after_both_read)

    def revoke() -> bool:
        user = db.session.get(User, owner_id)
        assert user is not None
        return pats.revoke(user, token_id)

    assert race([revoke, revoke], app) == [True, True]
    revoked = db.session.scalars(
        select(AuditEvent).where(AuditEvent.event == "token.revoked")
    ).all()
    assert len(revoked) == 1
    record = db.session.get(ApiToken, token_id)
    assert record is not None and record.revoked_at is not None
    assert record.revoked_at <= revoked[0].created_at + timedelta(seconds=1)


HIDDEN_IN_NAMES = ["\u202eexe.gpj", "ci\u2066 (read-only)", "line\nbreak", "tab\tname", "esc\x1b[31m"]


@pytest.mark.asvs("V2.2.1")
@pytest.mark.parametrize("name", HIDDEN_IN_NAMES)
def test_a_token_name_with_control_or_bidi_characters_is_refused(
    api: Api, make_user: Callable[..., User], name: str
) -> None:
    """A token's name is one line of what it says: a bidi override made the account page's
    list read another name than the one stored, and escape sequences reached terminals."""
    user = make_user("editor")
    body = {"name": name, "scopes": ["articles:read"], "password": PASSWORD}
    resp = api.call("POST", "/tokens", api.access_for(user), json=body)
    assert resp.status_code == 422
    assert "one line of visible text" in resp.get_data(as_text=True)
    assert db.session.scalar(select(ApiToken)) is None


def test_a_token_whose_owner_is_deleted_while_it_is_checked_gets_a_401_not_a_500(
    api: Api, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An admin deleted the account between the token's lookups and the write of its
    last use: the write then found no row (the token went with its owner) and the caller
    got a 500 instead of the 401 any other dead token gets."""
    from tests.support.races import delete_user_elsewhere

    owner = UserFactory(role_name="editor")
    owner_id, pat = owner.id, api.pat_for(owner, ["articles:read"])
    real = User.is_active
    assert isinstance(real, property) and real.fget is not None
    deleted: list[int] = []

    def deleted_once_read_as_active(user: User) -> bool:
        active = bool(real.fget(user))
        if user.id == owner_id and not deleted:
            deleted.append(user.id)
            delete_user_elsewhere(app, user.id)
        return active

    monkeypatch.setattr(User, "is_active", property(deleted_once_read_as_active))
    resp = api.call("GET", "/articles", pat)

    assert deleted == [owner_id]
    assert resp.status_code == 401, resp.get_data(as_text=True)
    assert resp.mimetype == "application/problem+json"
    assert resp.headers["WWW-Authenticate"].startswith('Bearer realm="bastion"')
    db.session.expire_all()
    assert db.session.get(User, owner_id) is None


@pytest.mark.asvs("V7.4.1", "V16.5.1")
def test_a_token_revoked_while_its_owner_is_deleted_gets_the_same_204_not_a_500(
    api: Api, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RFC 7009's revocation by a holder of the token: the account (and its tokens with it)
    was deleted between the token's lookup and the revocation's write. The conditional
    write then found no row, and reading the owner's id from the rolled-back record raised
    (a 500, not the 204 every other presented token gets)."""
    from bastion.api import pats
    from bastion.models import AuditEvent
    from tests.support.races import delete_user_elsewhere

    owner = UserFactory(role_name="editor")
    owner_id, pat = owner.id, api.pat_for(owner, ["articles:read"])
    real = pats.is_active
    deleted: list[int] = []

    def deleted_once_read_as_active(record: ApiToken) -> bool:
        active = real(record)
        if not deleted:
            deleted.append(record.user_id)
            delete_user_elsewhere(app, record.user_id)
        return active

    monkeypatch.setattr(pats, "is_active", deleted_once_read_as_active)
    resp = api.call("POST", "/auth/revoke", json={"token": pat})

    assert deleted == [owner_id]
    assert resp.status_code == 204, resp.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(User, owner_id) is None
    assert db.session.scalar(select(AuditEvent).where(AuditEvent.event == "token.revoked")) is None
