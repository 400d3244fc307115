"""Who may do what: every role against every route and method, with the expected status.

The rows are checked against ``app.url_map``: a route (or method) without a row fails the
test, so a new page cannot ship without a decision about who may use it. Each cell runs
against fresh objects, so a delete in one cell cannot change the answer of another.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask

from bastion.models import utcnow
from tests.factories import ArticleFactory, CommentFactory, UserFactory
from tests.support.roles import client_for, rate_limits_off, token

ROLES = ("anonymous", "viewer", "editor", "owner", "admin")
LOGIN = "login"  # a redirect to the sign-in page
IGNORED_METHODS = {"HEAD", "OPTIONS"}


@dataclass(frozen=True)
class Row:
    endpoint: str
    method: str
    expect: tuple[int | str, ...]  # one per role, in ROLES order
    variant: str = ""  # several rows may cover one route (e.g. published vs draft)


def row(endpoint: str, method: str, *expect: int | str, variant: str = "") -> Row:
    assert len(expect) == len(ROLES)
    return Row(endpoint, method, expect, variant)


#            endpoint                      method  anon   viewer editor owner admin
MATRIX = (
    row("main.index", "GET", 200, 200, 200, 200, 200),
    row("main.security_txt", "GET", 200, 200, 200, 200, 200),
    row("main.csp_report", "POST", 204, 204, 204, 204, 204),
    row("health.healthz", "GET", 200, 200, 200, 200, 200),
    row("health.readyz", "GET", 200, 200, 200, 200, 200),
    row("static", "GET", 200, 200, 200, 200, 200),
    row("auth.login", "GET", 200, 302, 302, 302, 302),
    row("auth.login", "POST", 200, 302, 302, 302, 302),
    row("setup.create_admin", "GET", 404, 404, 404, 404, 404),
    row("setup.create_admin", "POST", 404, 404, 404, 404, 404),
    row("content.list_articles", "GET", 200, 200, 200, 200, 200),
    row("content.show_article", "GET", 200, 200, 200, 200, 200),
    row("content.show_article", "GET", 404, 404, 404, 200, 200, variant="draft"),
    row("content.new_article", "GET", LOGIN, 403, 200, 200, 200),
    row("content.new_article", "POST", LOGIN, 403, 302, 302, 302),
    row("content.edit_article", "GET", LOGIN, 403, 403, 200, 200),
    row("content.edit_article", "POST", LOGIN, 403, 403, 302, 302),
    row("content.edit_article", "POST", LOGIN, 403, 404, 302, 302, variant="draft"),
    row("content.delete_article", "POST", LOGIN, 403, 403, 302, 302),
    row("content.delete_article", "POST", LOGIN, 403, 404, 302, 302, variant="draft"),
    row("content.add_comment", "POST", LOGIN, 302, 302, 302, 302),
    row("content.add_comment", "POST", LOGIN, 404, 404, 403, 403, variant="draft"),
    row("content.edit_comment", "GET", LOGIN, 403, 403, 200, 200),
    row("content.edit_comment", "POST", LOGIN, 403, 403, 302, 302),
    row("content.delete_comment", "POST", LOGIN, 403, 302, 302, 302),
    row("profiles.show_profile", "GET", 200, 200, 200, 200, 200),
    row("admin.users", "GET", LOGIN, 403, 403, 403, 200),
    row("admin.change_role", "POST", LOGIN, 403, 403, 403, 302),
    row("admin.disable_user", "POST", LOGIN, 403, 403, 403, 302),
    row("admin.enable_user", "POST", LOGIN, 403, 403, 403, 302),
    row("admin.sign_out_user", "POST", LOGIN, 403, 403, 403, 302),
    row("admin.audit_events", "GET", LOGIN, 403, 403, 403, 200),
    row("admin.export_audit", "GET", LOGIN, 403, 403, 403, 200),
    row("admin.security", "GET", LOGIN, 403, 403, 403, 200),
    # Last, because it ends the session the other cells use.
    row("auth.logout", "POST", LOGIN, 302, 302, 302, 302),
)


@dataclass
class World:
    """The accounts of the matrix; objects are made per cell by ``target``."""

    owner: Any

    def target(self, endpoint: str, variant: str) -> dict[str, Any]:
        """URL values for one cell, pointing at objects made just for it."""
        values: dict[str, Any] = {
            "username": self.owner.username,
            "token": "no-such-setup-token",
            "filename": "css/bastion.css",
        }
        if endpoint.startswith("content."):
            draft = variant == "draft"
            article = ArticleFactory(
                author=self.owner,
                status="draft" if draft else "published",
                published_at=None if draft else utcnow(),
            )
            values["article_id"] = article.id
            if "comment" in endpoint:
                values["comment_id"] = CommentFactory(article=article, author=self.owner).id
        if endpoint.startswith("admin.") and "user_id" not in values:
            disabled = utcnow() if endpoint == "admin.enable_user" else None
            values["user_id"] = UserFactory(disabled_at=disabled).id
        return values


FORMS: dict[str, dict[str, str]] = {
    "content.new_article": {"title": "Matrix", "body": "Body", "publish": "y"},
    "content.edit_article": {"title": "Matrix", "body": "Body", "publish": "y"},
    "content.add_comment": {"body": "A comment"},
    "content.edit_comment": {"body": "Edited"},
    "admin.change_role": {"role": "editor"},
    "auth.login": {"username": "nobody", "password": "not the right password"},
}
CSP_REPORT = b'{"csp-report": {"violated-directive": "script-src", "blocked-uri": "inline"}}'


def _route_methods(app: Flask) -> set[tuple[str, str]]:
    return {
        (rule.endpoint, method)
        for rule in app.url_map.iter_rules()
        for method in (rule.methods or set()) - IGNORED_METHODS
    }


def _request(client: Any, app: Flask, r: Row, values: dict[str, Any], csrf: str) -> Any:
    from flask import url_for

    with app.test_request_context(base_url="https://localhost"):
        rule = next(x for x in app.url_map.iter_rules() if x.endpoint == r.endpoint)
        url = url_for(r.endpoint, **{k: v for k, v in values.items() if k in rule.arguments})
    if r.method == "GET":
        return client.get(url)
    if r.endpoint == "main.csp_report":
        return client.post(url, data=CSP_REPORT, content_type="application/csp-report")
    return client.post(url, data={"csrf_token": csrf, **FORMS.get(r.endpoint, {})})


def _outcome(resp: Any) -> int | str:
    if resp.status_code == 302 and resp.headers["Location"].startswith("/auth/login?next="):
        return LOGIN
    return int(resp.status_code)


@pytest.mark.asvs("V8.1.1", "V8.2.1", "V8.2.2", "V8.3.1")
def test_matrix_covers_every_route_and_method(app: Flask) -> None:
    covered = {(r.endpoint, r.method) for r in MATRIX}
    routes = _route_methods(app)
    assert not routes - covered, f"routes without a row in MATRIX: {sorted(routes - covered)}"
    assert not covered - routes, f"rows for routes that do not exist: {sorted(covered - routes)}"


@pytest.mark.asvs("V8.1.1", "V8.2.1", "V8.2.2", "V8.3.1")
def test_every_role_gets_the_expected_answer(app: Flask) -> None:
    owner = UserFactory(role_name="editor")
    users: dict[str, Any] = {
        "anonymous": None,
        "viewer": UserFactory(role_name="viewer"),
        "editor": UserFactory(role_name="editor"),
        "owner": owner,
        "admin": UserFactory(role_name="admin"),
    }
    world = World(owner=owner)
    wrong: list[str] = []
    with rate_limits_off():
        for i, role in enumerate(ROLES):
            client = client_for(app, users[role])
            csrf = token(client)
            for r in MATRIX:
                values = world.target(r.endpoint, r.variant)
                got = _outcome(_request(client, app, r, values, csrf))
                if got != r.expect[i]:
                    wrong.append(
                        f"{role:9} {r.method:4} {r.endpoint} {r.variant}: "
                        f"expected {r.expect[i]}, got {got}"
                    )
    assert not wrong, "\n".join(wrong)
