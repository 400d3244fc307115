"""Property test: every state-changing HTML form, fed hostile bodies, answers without a 500.

The API is fuzzed from its OpenAPI document (tests/api/test_openapi.py); the site's forms
are fuzzed here. Every POST route outside ``/api/`` has a case (a new route without one
fails ``test_every_form_route_has_a_case``); each is posted, with a valid CSRF token, bodies
built from its real field names plus hostile values: fields missing, repeated or extra,
empty, very long, control characters, NUL, lone surrogates, RTL overrides, numbers out of
range, and the ids of another user's objects. Whatever the body, the answer is below 500,
never a traceback, and a refusal is a 4xx or the form shown again with its error. Another
user's article, comment, profile and sessions are byte-identical after the whole run.

Bounded and deterministic (``derandomize=True``, a few examples per route): about ten
seconds per backend.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from bastion.extensions import db
from bastion.models import ApiToken, UserSession
from tests.factories import ArticleFactory, CommentFactory, UserFactory
from tests.support.roles import client_for, rate_limits_off, token

FUZZ = settings(
    max_examples=6,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

TRACEBACK_MARKERS = ("Traceback (most recent call last)", 'File "/', "sqlalchemy.exc")
ERROR_TITLE = "<title>Error: "
FAR_ID = 10**20  # beyond any database integer
BIG_ID = 2**31  # just past a 32-bit id column

HOSTILE_STRINGS = (
    "",
    " ",
    "\x00",
    "a\x00b",
    "\x07\x08\x1b[31m",
    "line\r\nInjected-Header: x",
    "\u202eevil\u202c",
    "\u200f\u061c\u2066x\u2069",
    "\ud800",
    "x\udfffy",
    "\\ud800",
    "&#55296;",
    "\ufeff\ufffe\uffff",
    "<script>alert(1)</script>",
    "' OR 1=1 --",
    "{{ 7*7 }}",
    "%s%n",
    "-1",
    "0",
    "1e309",
    "NaN",
    str(BIG_ID),
    str(FAR_ID),
    "-" + str(FAR_ID),
    "9" * 400,
)
LONG_LENGTHS = (33, 81, 201, 5_001, 20_001, 100_001)
EXTRA_FIELDS = ("id", "user_id", "author_id", "role", "is_admin", "article_id", "password_hash")


@dataclass
class World:
    """The objects the cases point at: the actors', and the witness's (never to change)."""

    actor_article: int
    actor_comment: int
    target_user: int
    witness_user: int
    witness_article: int
    witness_comment: int
    witness_session: int
    witness_token: int

    def other_ids(self) -> list[int]:
        return [self.witness_user, self.witness_article, self.witness_comment,
                self.witness_session, self.witness_token]


@dataclass(frozen=True)
class Case:
    endpoint: str
    role: str  # "anonymous", "editor" (owns its article and comment) or "admin"
    path: Callable[[World, int | None], str]  # the id drawn for the route's <int:...> part
    fields: dict[str, str] = field(default_factory=dict)  # name -> "text" | "int" | "bool"
    ids: Callable[[World], list[int]] | None = None  # the route's own ids to try
    answers_200: bool = False  # a 200 may be a success page, not only a re-shown form


def _fixed(path: str) -> Callable[[World, int | None], str]:
    return lambda world, _id: path


def _with_id(template: str) -> Callable[[World, int | None], str]:
    return lambda world, id_: template.format(id_)


def _own_or_other(own: Callable[[World], int], other: Callable[[World], int]
                  ) -> Callable[[World], list[int]]:
    return lambda w: [own(w), other(w), 0, BIG_ID, FAR_ID]


ARTICLE_IDS = _own_or_other(lambda w: w.actor_article, lambda w: w.witness_article)
COMMENT_IDS = _own_or_other(lambda w: w.actor_comment, lambda w: w.witness_comment)
# Admin actions change the user they name; they aim at a target user, never the witness.
TARGET_IDS: Callable[[World], list[int]] = lambda w: [w.target_user, 0, BIG_ID, FAR_ID]  # noqa: E731
SESSION_IDS: Callable[[World], list[int]] = lambda w: [w.witness_session, 0, BIG_ID, FAR_ID]  # noqa: E731
TOKEN_IDS: Callable[[World], list[int]] = lambda w: [w.witness_token, 0, BIG_ID, FAR_ID]  # noqa: E731
BAD_TOKEN = "not-a-real-token.AAAA"
ARTICLE = {"title": "text", "body": "text", "publish": "bool", "revision": "text"}
COMMENT = {"body": "text", "revision": "text"}

CASES = (
    # Signed out: the sign-in, registration and recovery flows.
    Case("auth.login", "anonymous", _fixed("/auth/login"),
         {"username": "text", "password": "text", "remember": "bool", "next": "text"}),
    Case("auth.register", "anonymous", _fixed("/auth/register"),
         {"username": "text", "email": "text", "password": "text", "confirm": "text"},
         answers_200=True),
    Case("auth.reset_request", "anonymous", _fixed("/auth/reset"), {"email": "text"},
         answers_200=True),
    Case("auth.reset_password", "anonymous", _fixed(f"/auth/reset/{BAD_TOKEN}"),
         {"password": "text", "confirm": "text"}),
    Case("auth.confirm", "anonymous", _fixed(f"/auth/confirm/{BAD_TOKEN}"), {}),
    Case("auth.two_factor", "anonymous", _fixed("/auth/2fa"), {"code": "text", "marker": "text"}),
    Case("setup.create_admin", "anonymous", _fixed(f"/setup/{BAD_TOKEN}"),
         {"email": "text", "username": "text", "password": "text", "confirm": "text"}),
    Case("main.csp_report", "anonymous", _fixed("/csp-report"), {"csp-report": "text"}),
    # Signed in as an editor: its own content, its account, and other people's ids.
    Case("auth.reauth", "editor", _fixed("/auth/reauth"),
         {"password": "text", "code": "text", "next": "text"}),
    Case("auth.logout", "editor", _fixed("/auth/logout"), {}),
    Case("content.new_article", "editor", _fixed("/articles/new"), ARTICLE),
    Case("content.edit_article", "editor", _with_id("/articles/{}/edit"), ARTICLE, ARTICLE_IDS),
    Case("content.delete_article", "editor", _with_id("/articles/{}/delete"), {}, ARTICLE_IDS),
    Case("content.add_comment", "editor", _with_id("/articles/{}/comments"), COMMENT,
         ARTICLE_IDS),
    Case("content.edit_comment", "editor", _with_id("/comments/{}/edit"), COMMENT, COMMENT_IDS),
    Case("content.delete_comment", "editor", _with_id("/comments/{}/delete"), {}, COMMENT_IDS),
    Case("account.update_profile", "editor", _fixed("/account/profile"),
         {"display_name": "text", "bio": "text"}),
    Case("account.change_email", "editor", _fixed("/account/email"), {"email": "text"}),
    Case("account.confirm_email", "editor", _fixed(f"/account/email/{BAD_TOKEN}"), {}),
    Case("account.change_password", "editor", _fixed("/account/password"),
         {"current": "text", "password": "text", "confirm": "text"}),
    Case("account.two_factor_setup", "editor", _fixed("/account/2fa"),
         {"code": "text", "next": "text"}),
    Case("account.two_factor_disable", "admin", _fixed("/account/2fa/disable"), {"code": "text"}),
    Case("account.regenerate_recovery_codes", "admin", _fixed("/account/2fa/recovery-codes"),
         {"code": "text"}),
    Case("account.delete_account", "editor", _fixed("/account/delete"), {"confirm": "text"}),
    Case("account.revoke", "editor", _with_id("/account/sessions/{}/revoke"), {}, SESSION_IDS),
    Case("account.revoke_all_sessions", "editor", _fixed("/account/sessions/revoke-all"), {}),
    Case("api_web.create_token", "editor", _fixed("/account/tokens"),
         {"name": "text", "scopes": "text", "days": "int"}, answers_200=True),
    Case("api_web.revoke_token", "editor", _with_id("/account/tokens/{}/revoke"), {}, TOKEN_IDS),
    # No file part: the upload forms must refuse the body, not fail on it.
    Case("uploads.upload_avatar", "editor", _fixed("/account/avatar"), {"image": "text"}),
    Case("uploads.upload_article_image", "editor", _with_id("/articles/{}/images"),
         {"image": "text", "alt": "text"}, ARTICLE_IDS),
    Case("uploads.delete_upload", "editor", _fixed("/uploads/0123456789abcdef/delete"), {}),
    # Signed in as an admin, aimed at a target user.
    Case("admin.change_role", "admin", _with_id("/admin/users/{}/role"),
         {"role": "text", "username": "text", "confirm_self": "bool"}, TARGET_IDS),
    Case("admin.disable_user", "admin", _with_id("/admin/users/{}/disable"),
         {"username": "text"}, TARGET_IDS),
    Case("admin.enable_user", "admin", _with_id("/admin/users/{}/enable"),
         {"username": "text"}, TARGET_IDS),
    Case("admin.sign_out_user", "admin", _with_id("/admin/users/{}/sign-out"),
         {"username": "text"}, TARGET_IDS),
    Case("admin.reset_two_factor", "admin", _with_id("/admin/users/{}/2fa-reset"),
         {"confirm": "text", "reason": "text"}, TARGET_IDS),
    Case("admin.delete_user", "admin", _with_id("/admin/users/{}/delete"), {"confirm": "text"},
         TARGET_IDS),
)


# ---------------------------------------------------------------------------- bodies ---
def _hostile_text() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(HOSTILE_STRINGS),
        st.text(max_size=40),
        st.builds(lambda ch, n: ch * n, st.sampled_from("a\u202e\x01\u00e9\U0001d54f"),
                  st.sampled_from(LONG_LENGTHS)),
    )


def _values(kind: str, others: list[int]) -> st.SearchStrategy[str]:
    if kind == "int":
        numbers = st.sampled_from([0, -1, BIG_ID, FAR_ID, -FAR_ID, *others]).map(str)
        return st.one_of(numbers, _hostile_text())
    if kind == "bool":
        return st.sampled_from(["y", "on", "", "0", "false", "\x00", "y" * 1000])
    return st.one_of(_hostile_text(), st.sampled_from(others).map(str))


@st.composite
def _bodies(draw: st.DrawFn, case: Case, world: World) -> list[tuple[str, str]]:
    """Form pairs: each real field missing, once, or repeated; some extra fields."""
    others = world.other_ids()
    pairs: list[tuple[str, str]] = []
    for name, kind in case.fields.items():
        count = draw(st.sampled_from([0, 1, 1, 2]))
        pairs += [(name, draw(_values(kind, others))) for _ in range(count)]
    for name in draw(st.lists(st.sampled_from(EXTRA_FIELDS), max_size=2, unique=True)):
        pairs.append((name, str(draw(st.sampled_from(others)))))
    return pairs


def _encode(pairs: list[tuple[str, str]]) -> bytes:
    """URL-encode as a browser would, except that lone surrogates go out as their bytes."""
    return "&".join(
        f"{quote(k)}={quote(v.encode('utf-8', 'surrogatepass'), safe='')}" for k, v in pairs
    ).encode("ascii")


# ----------------------------------------------------------------------------- world ---
WITNESS_TABLES = (
    ("users", "id", "witness_user"),
    ("articles", "id", "witness_article"),
    ("comments", "id", "witness_comment"),
    ("user_sessions", "user_id", "witness_user"),
    ("api_tokens", "user_id", "witness_user"),
)


def _snapshot(world: World) -> dict[str, list[tuple[Any, ...]]]:
    db.session.remove()
    rows = {}
    for table, column, attr in WITNESS_TABLES:
        query = text(f"SELECT * FROM {table} WHERE {column} = :id ORDER BY id")  # noqa: S608
        rows[table] = [tuple(r) for r in db.session.execute(query, {"id": getattr(world, attr)})]
    db.session.remove()
    return rows


@dataclass
class Actors:
    world: World
    users: dict[str, Any]


def _make_world(app: Flask) -> Actors:
    from bastion.api import pats

    editor = UserFactory(role_name="editor")
    admin = UserFactory(role_name="admin")
    target = UserFactory(role_name="viewer")
    witness = UserFactory(role_name="editor", display_name="Witness", bio="Left *alone*.")
    own_article = ArticleFactory(author=editor)
    own_comment = CommentFactory(article=own_article, author=editor)
    other_article = ArticleFactory(author=witness)
    other_comment = CommentFactory(article=other_article, author=witness)
    client_for(app, witness)  # the witness has a session of its own
    with app.test_request_context():
        pats.create(witness, name="witness", scopes=["articles:read"], days=30)
    db.session.commit()
    session_id = db.session.scalars(
        db.select(UserSession.id).where(UserSession.user_id == witness.id)).one()
    token_id = db.session.scalars(
        db.select(ApiToken.id).where(ApiToken.user_id == witness.id)).one()
    world = World(own_article.id, own_comment.id, target.id, witness.id, other_article.id,
                  other_comment.id, session_id, token_id)
    return Actors(world, {"anonymous": None, "editor": editor, "admin": admin})


def check_answer(case: Case, path: str, resp: Any) -> None:
    """Below 500, no traceback, and a 200 to a refused post shows the form's error."""
    body = resp.get_data(as_text=True)
    where = f"{case.endpoint} POST {path} -> {resp.status_code}"
    assert resp.status_code < 500, where
    assert not any(marker in body for marker in TRACEBACK_MARKERS), where
    if resp.status_code == 200 and not case.answers_200:
        assert ERROR_TITLE in body, f"{where}: a 200 without an error message"


# ----------------------------------------------------------------------------- tests ---
def test_every_form_route_has_a_case(app: Flask) -> None:
    """A new state-changing page cannot ship without being fuzzed here."""
    posted = {r.endpoint for r in app.url_map.iter_rules()
              if "POST" in (r.methods or ()) and not r.rule.startswith("/api/")}
    assert posted == {c.endpoint for c in CASES}


@pytest.mark.asvs("V2.2.1", "V2.2.2", "V8.2.2", "V16.5.1", "V16.5.3")
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.endpoint)
def test_hostile_form_bodies_never_crash_nor_touch_others(app: Flask, case: Case) -> None:
    actors = _make_world(app)
    world = actors.world
    before = _snapshot(world)
    ids = case.ids(world) if case.ids else [0]

    @FUZZ
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        path = case.path(world, data.draw(st.sampled_from(ids)))
        client = client_for(app, actors.users[case.role])
        csrf = token(client)
        pairs = [("csrf_token", csrf), *data.draw(_bodies(case, world))]
        resp = client.post(path, data=_encode(pairs),
                           content_type="application/x-www-form-urlencoded")
        check_answer(case, path, resp)

    with rate_limits_off():
        for id_ in ids:  # every id once, the other user's included, whatever the draws
            path = case.path(world, id_)
            client = client_for(app, actors.users[case.role])
            check_answer(case, path, client.post(path, data={"csrf_token": token(client)}))
        run()
    assert _snapshot(world) == before
