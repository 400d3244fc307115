"""Who may do what: every role against every route and method, with the expected status.

The rows are checked against ``app.url_map``: a route (or method) without a row fails the
test, so a new page cannot ship without a decision about who may use it. Each cell runs
against fresh objects, so a delete in one cell cannot change the answer of another.

Site routes are tried with browser sessions (``MATRIX``); the bearer-only API under
``/api/v1`` is tried with no credentials, with a signed-in browser's cookies only (which it
must refuse), and with each role's bearer token (``API_MATRIX``).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask

from bastion.models import UserSession, utcnow
from tests.factories import PASSWORD, TOTP_SECRET, ArticleFactory, CommentFactory, UserFactory
from tests.support.roles import client_for, rate_limits_off, token

ROLES = ("anonymous", "viewer", "editor", "owner", "admin")
API_CREDENTIALS = ("none", "cookie", "viewer", "editor", "owner", "admin")
LOGIN = "login"  # a redirect to the sign-in page
REAUTH = "reauth"  # a redirect to re-enter the password (a stale session)
ENROL = "enrol"  # a redirect to set up 2FA (a role that requires it, not yet enrolled)
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
    row("content.delete_comment", "POST", LOGIN, 403, 403, 302, 302),
    row("profiles.show_profile", "GET", 200, 200, 200, 200, 200),
    row("admin.home", "GET", LOGIN, 403, 403, 403, 302),
    row("admin.users", "GET", LOGIN, 403, 403, 403, 200),
    row("admin.change_role", "POST", LOGIN, 403, 403, 403, 302),
    row("admin.disable_user", "POST", LOGIN, 403, 403, 403, 302),
    row("admin.enable_user", "POST", LOGIN, 403, 403, 403, 302),
    row("admin.sign_out_user", "POST", LOGIN, 403, 403, 403, 302),
    row("admin.reset_two_factor", "GET", LOGIN, 403, 403, 403, 200),
    # The admin gets past policy, CSRF and freshness to the form, which wants the username.
    row("admin.reset_two_factor", "POST", LOGIN, 403, 403, 403, 422),
    row("admin.delete_user", "GET", LOGIN, 403, 403, 403, 200),
    # As above: the admin reaches the form, which wants the username, so no one is deleted.
    row("admin.delete_user", "POST", LOGIN, 403, 403, 403, 422),
    row("admin.audit_events", "GET", LOGIN, 403, 403, 403, 200),
    row("admin.export_audit", "GET", LOGIN, 403, 403, 403, 200),
    row("admin.security", "GET", LOGIN, 403, 403, 403, 200),
    row("account.index", "GET", LOGIN, 200, 200, 200, 200),
    # What history-guard.js asks before showing a page Back restored: 401, not sign-in.
    row("account.session_check", "GET", 401, 204, 204, 204, 204),
    row("account.update_profile", "POST", LOGIN, 302, 302, 302, 302),
    row("account.change_email", "POST", LOGIN, 302, 302, 302, 302),
    row("account.change_password", "POST", LOGIN, 302, 302, 302, 302),
    # Unknown or forged emailed links: the "link is not valid" page, whoever follows them.
    row("account.confirm_email", "GET", 404, 404, 404, 404, 404),
    row("account.confirm_email", "POST", 404, 404, 404, 404, 404),
    row("account.two_factor_setup", "GET", LOGIN, 200, 200, 200, 302),
    row("account.two_factor_setup", "POST", LOGIN, 422, 422, 422, 302),
    # Only the admin has 2FA; without a code from the app the page asks for one.
    row("account.regenerate_recovery_codes", "POST", LOGIN, 302, 302, 302, 422),
    # Someone else's session is left alone (with a "not found" message on the account page;
    # tests/account/test_account.py proves the row is untouched).
    row("account.revoke", "POST", LOGIN, 302, 302, 302, 302),
    # The holder's own data only (no id in the URL).
    row("account.export_data", "GET", LOGIN, 200, 200, 200, 200),
    row("api_web.docs", "GET", 200, 200, 200, 200, 200),
    row("api_web.tokens", "GET", LOGIN, 200, 200, 200, 200),
    row("api_web.create_token", "POST", LOGIN, 200, 200, 200, 200),
    row("api_web.revoke_token", "POST", LOGIN, 404, 404, 302, 404),
    row("auth.register", "GET", 200, 302, 302, 302, 302),
    row("auth.register", "POST", 302, 302, 302, 302, 302),
    row("auth.confirm", "GET", 404, 404, 404, 404, 404),
    row("auth.confirm", "POST", 404, 404, 404, 404, 404),
    row("auth.reset_request", "GET", 200, 200, 200, 200, 200),
    row("auth.reset_request", "POST", 302, 302, 302, 302, 302),
    row("auth.reset_password", "GET", 404, 404, 404, 404, 404),
    row("auth.reset_password", "POST", 404, 404, 404, 404, 404),
    row("auth.two_factor", "GET", 302, 302, 302, 302, 302),
    row("auth.two_factor", "POST", 302, 302, 302, 302, 302),
    row("auth.reauth", "GET", LOGIN, 200, 200, 200, 200),
    row("auth.reauth", "POST", LOGIN, 200, 200, 200, 200),
    row("metrics.export", "GET", 404, 404, 404, 404, 404),
    row("uploads.serve_upload", "GET", 200, 200, 200, 200, 200),
    row("uploads.serve_upload", "GET", 404, 404, 404, 200, 200, variant="draft"),
    row("uploads.upload_avatar", "GET", LOGIN, 200, 200, 200, 200),
    row("uploads.upload_avatar", "POST", LOGIN, 302, 302, 302, 302),
    row("uploads.upload_article_image", "GET", LOGIN, 403, 403, 200, 200),
    row("uploads.upload_article_image", "POST", LOGIN, 403, 403, 302, 302),
    row("uploads.delete_upload", "POST", LOGIN, 403, 403, 302, 302),
    # Last, because they end the 2FA or the session the other cells use (``RESETS``).
    row("account.two_factor_disable", "POST", LOGIN, 302, 302, 302, 422),
    row("account.revoke_all_sessions", "POST", LOGIN, 302, 302, 302, 302),
    # The holder's own account only (no id in the URL); the form wants the username, so no
    # one is deleted. The admin is the last active one: refused, with no form at all.
    row("account.delete_account", "GET", LOGIN, 200, 200, 200, 200),
    row("account.delete_account", "POST", LOGIN, 422, 422, 422, 403),
    row("auth.logout", "POST", LOGIN, 302, 302, 302, 302),
)
# Rows after which a role's session (and the admin's 2FA) is set up again.
# A password change starts a new session (and CSRF token) for the browser that made it.
RESETS = {"account.change_password", "account.revoke_all_sessions", "auth.logout"}


@dataclass(frozen=True)
class ApiRow:
    endpoint: str
    method: str
    expect: tuple[int, ...]  # one per API_CREDENTIALS entry


def api_row(endpoint: str, method: str, *expect: int) -> ApiRow:
    assert len(expect) == len(API_CREDENTIALS)
    return ApiRow(endpoint, method, expect)


# Bodies are valid where the route needs one, so a 2xx shows the credential was accepted;
# the scopes of personal access tokens are the API's own scope-matrix test (tests/api).
#                endpoint            method    none cookie viewer editor owner admin
API_MATRIX = (
    api_row("api.get_openapi", "GET", 200, 200, 200, 200, 200, 200),
    api_row("api.issue_token", "POST", 401, 401, 401, 401, 401, 401),
    api_row("api.refresh_token", "POST", 401, 401, 401, 401, 401, 401),
    api_row("api.revoke_token", "POST", 204, 204, 204, 204, 204, 204),
    api_row("api.get_me", "GET", 401, 401, 200, 200, 200, 200),
    api_row("api.update_me", "PATCH", 401, 401, 200, 200, 200, 200),
    api_row("api.list_articles", "GET", 401, 401, 200, 200, 200, 200),
    api_row("api.create_article", "POST", 401, 401, 403, 201, 201, 201),
    api_row("api.get_article", "GET", 401, 401, 200, 200, 200, 200),
    api_row("api.update_article", "PATCH", 401, 401, 403, 403, 200, 200),
    api_row("api.delete_article", "DELETE", 401, 401, 403, 403, 204, 204),
    api_row("api.list_comments", "GET", 401, 401, 200, 200, 200, 200),
    api_row("api.create_comment", "POST", 401, 401, 201, 201, 201, 201),
    api_row("api.delete_comment", "DELETE", 401, 401, 403, 403, 204, 204),
    api_row("api.list_tokens", "GET", 401, 401, 200, 200, 200, 200),
    # The admin (2FA on) sends no one-time code here, so the re-authentication fails.
    api_row("api.create_token", "POST", 401, 401, 201, 201, 201, 403),
    api_row("api.delete_token", "DELETE", 401, 401, 404, 404, 204, 404),
)


@dataclass
class World:
    """The accounts of the matrix; objects are made per cell by ``target``."""

    owner: Any

    def target(self, endpoint: str, variant: str) -> dict[str, Any]:
        """URL values for one cell, pointing at objects made just for it (all the owner's)."""
        values: dict[str, Any] = {
            "username": self.owner.username,
            "token": "no-such-token",
            "filename": "css/bastion.css",
        }
        draft = variant == "draft"
        if endpoint.startswith(("content.", "api.", "uploads.upload_article")):
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
            enrolled = endpoint == "admin.reset_two_factor"  # nothing to reset otherwise
            target = UserFactory(disabled_at=disabled, two_factor=enrolled)
            values["user_id"], values["target_username"] = target.id, target.username
        if endpoint == "account.revoke":
            values["session_id"] = self._session().id
        if endpoint in ("api_web.revoke_token", "api.delete_token"):
            from bastion.api import pats

            values["token_id"] = pats.create(self.owner, name="m", scopes=["articles:read"]).record.id
        if endpoint in ("uploads.serve_upload", "uploads.delete_upload"):
            values["upload_id"] = self._image(draft).id
        return values

    def _session(self) -> UserSession:
        from bastion.extensions import db
        from bastion.security.tokens import new_token, token_hash

        now = utcnow()
        record = UserSession(token_hash=token_hash(new_token(32)), user_id=self.owner.id,
                             created_at=now, last_seen_at=now, expires_at=now + timedelta(hours=1))
        db.session.add(record)
        db.session.commit()
        return record

    def _image(self, draft: bool) -> Any:
        """An image of one of the owner's articles (a draft's images are private)."""
        from bastion.uploads import services
        from tests.uploads import corpus

        article = ArticleFactory(
            author=self.owner,
            status="draft" if draft else "published",
            published_at=None if draft else utcnow(),
        )
        return services.store_image(
            self.owner, io.BytesIO(corpus.png()), kind="article", article=article
        )


NEW_PASSWORD = "matrix meadow lantern 7731"
FORMS: dict[str, dict[str, Any]] = {
    "content.new_article": {"title": "Matrix", "body": "Body", "publish": "y"},
    "content.edit_article": {"title": "Matrix", "body": "Body", "publish": "y"},
    "content.add_comment": {"body": "A comment"},
    "content.edit_comment": {"body": "Edited"},
    "admin.change_role": {"role": "editor"},
    "admin.reset_two_factor": {"confirm": "someone-else", "reason": "video call, ID checked"},
    "admin.delete_user": {"confirm": "someone-else"},
    "auth.login": {"username": "nobody", "password": "not the right password"},
    "auth.register": {"username": "matrixnew", "email": "matrixnew@example.org",
                      "password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
    "auth.reset_request": {"email": "nobody@example.org"},
    "auth.reset_password": {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
    "auth.reauth": {"password": "not the right password"},
    "auth.two_factor": {"code": "000000"},
    "account.update_profile": {"display_name": "Matrix", "bio": ""},
    "account.change_email": {"email": "changed@example.org"},
    "account.change_password": {"current": PASSWORD, "password": NEW_PASSWORD,
                                "confirm": NEW_PASSWORD},
    "account.two_factor_setup": {"code": "000000"},
    "account.delete_account": {"confirm": "someone-else"},
    "api_web.create_token": {"name": "matrix", "scopes": "articles:read", "days": "7"},
}
UPLOAD_FORMS = {"uploads.upload_avatar", "uploads.upload_article_image"}
NAMED_TARGET_FORMS = {"admin.change_role", "admin.disable_user", "admin.enable_user",
                      "admin.sign_out_user"}
CSP_REPORT = b'{"csp-report": {"violated-directive": "script-src", "blocked-uri": "inline"}}'


def _route_methods(app: Flask, prefix: str | None = None) -> set[tuple[str, str]]:
    return {
        (rule.endpoint, method)
        for rule in app.url_map.iter_rules()
        for method in (rule.methods or set()) - IGNORED_METHODS
        if prefix is None or rule.rule.startswith(prefix)
    }


def _url(app: Flask, endpoint: str, values: dict[str, Any]) -> str:
    from flask import url_for

    with app.test_request_context(base_url="https://localhost"):
        rule = next(x for x in app.url_map.iter_rules() if x.endpoint == endpoint)
        return url_for(endpoint, **{k: v for k, v in values.items() if k in rule.arguments})


def _request(client: Any, app: Flask, r: Row, values: dict[str, Any], csrf: str) -> Any:
    url = _url(app, r.endpoint, values)
    if r.method == "GET":
        return client.get(url)
    if r.endpoint == "main.csp_report":
        return client.post(url, data=CSP_REPORT, content_type="application/csp-report")
    data: dict[str, Any] = {"csrf_token": csrf, **FORMS.get(r.endpoint, {})}
    if r.endpoint in NAMED_TARGET_FORMS:  # the users list's row forms name their account
        data["username"] = values["target_username"]
    if r.endpoint in UPLOAD_FORMS:
        from tests.uploads import corpus

        data["image"] = (io.BytesIO(corpus.png()), "m.png", "image/png")
        return client.post(url, data=data, content_type="multipart/form-data")
    return client.post(url, data=data)


def _outcome(resp: Any) -> int | str:
    if resp.status_code == 302:
        location = resp.headers["Location"]
        for prefix, name in (("/auth/login?next=", LOGIN), ("/auth/reauth", REAUTH),
                             ("/account/2fa", ENROL)):
            if location.startswith(prefix):
                return name
    return int(resp.status_code)


@pytest.mark.asvs("V8.1.1", "V8.2.1", "V8.2.2", "V8.3.1")
def test_matrix_covers_every_route_and_method(app: Flask) -> None:
    covered = {(r.endpoint, r.method) for r in MATRIX}
    covered_api = {(r.endpoint, r.method) for r in API_MATRIX}
    api_routes = _route_methods(app, "/api/v1/")
    routes = _route_methods(app) - api_routes
    assert not routes - covered, f"routes without a row in MATRIX: {sorted(routes - covered)}"
    assert not covered - routes, f"rows for routes that do not exist: {sorted(covered - routes)}"
    missing = api_routes - covered_api
    assert not missing, f"API routes without a row in API_MATRIX: {sorted(missing)}"
    extra = covered_api - api_routes
    assert not extra, f"API_MATRIX rows for routes that do not exist: {sorted(extra)}"


def _enrol_again(user: Any) -> None:
    """Undo a 2FA-disable cell, as the factory enrols admins."""
    from bastion.extensions import db
    from tests.factories import _sealed

    db.session.refresh(user)
    user.totp_secret, user.totp_enabled_at, user.totp_last_step = _sealed(TOTP_SECRET), utcnow(), None
    db.session.commit()


def _users() -> dict[str, Any]:
    owner = UserFactory(role_name="editor")
    return {
        "anonymous": None,
        "viewer": UserFactory(role_name="viewer"),
        "editor": UserFactory(role_name="editor"),
        "owner": owner,
        "admin": UserFactory(role_name="admin"),
    }


@pytest.mark.asvs("V8.1.1", "V8.2.1", "V8.2.2", "V8.3.1")
def test_every_role_gets_the_expected_answer(app: Flask) -> None:
    users = _users()
    world = World(owner=users["owner"])
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
                if r.endpoint in RESETS and users[role] is not None:
                    if role == "admin":
                        _enrol_again(users[role])
                    client = client_for(app, users[role])
                    csrf = token(client)
    assert not wrong, "\n".join(wrong)


API_BODIES: dict[str, dict[str, Any]] = {
    "api.issue_token": {"username": "nobody", "password": "not the right password"},
    "api.refresh_token": {"refresh_token": "not-a-token"},
    "api.revoke_token": {"token": "not-a-token"},
    "api.update_me": {"bio": "Matrix"},
    "api.create_article": {"title": "Matrix", "body": "Body"},
    "api.update_article": {"title": "Matrix 2"},
    "api.create_comment": {"body": "A comment"},
    "api.create_token": {"name": "matrix", "scopes": ["articles:read"], "password": PASSWORD},
}


@pytest.mark.asvs("V8.1.1", "V8.2.1", "V8.3.1", "V3.5.1")
def test_api_answers_bearer_tokens_only_and_by_role(app: Flask) -> None:
    """A browser's session cookie is no credential for the API (so it needs no CSRF token)."""
    from bastion.api.tokens import issue_pair

    users = _users()
    world = World(owner=users["owner"])
    browser = client_for(app, users["admin"])  # signed in: the "cookie" column
    wrong: list[str] = []
    with rate_limits_off():
        for i, who in enumerate(API_CREDENTIALS):
            user = users.get(who)
            headers = {"Authorization": f"Bearer {issue_pair(user).access_token}"} if user else {}
            client = browser if who == "cookie" else app.test_client()
            for r in API_MATRIX:
                body = dict(API_BODIES.get(r.endpoint, {}))
                if r.endpoint == "api.issue_token":  # its own sign-in throttle stays on
                    body["username"] = f"nobody-{who}"
                url = _url(app, r.endpoint, world.target(r.endpoint, ""))
                kwargs: dict[str, Any] = {"json": body} if r.method in ("POST", "PATCH") else {}
                resp = client.open(url, method=r.method, headers=headers,
                                   environ_base={"REMOTE_ADDR": f"198.51.100.{i + 1}"}, **kwargs)
                got = resp.status_code
                if got != r.expect[i]:
                    wrong.append(f"{who:7} {r.method:6} {r.endpoint}: expected {r.expect[i]}, got {got}")
    assert not wrong, "\n".join(wrong)
