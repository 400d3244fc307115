"""Deny by default: every route has a declared policy, and a route without one stops start-up."""

from __future__ import annotations

import pytest
from flask import Blueprint, Flask

from bastion.security.access import Access, check_every_view_has_policy, route_policies
from tests.factories import PASSWORD
from tests.support.auth import csrf_token

# Every route of the application and who may call it. A new route must be added here, so
# its access policy is a reviewed decision, not an accident.
EXPECTED: dict[str, Access] = {
    "main.index": Access.PUBLIC,
    "main.security_txt": Access.PUBLIC,
    "main.csp_report": Access.PUBLIC,
    "health.healthz": Access.PUBLIC,
    "health.readyz": Access.PUBLIC,
    "metrics.export": Access.PUBLIC,
    "auth.login": Access.PUBLIC,
    "auth.logout": Access.SIGNED_IN,
    "auth.two_factor": Access.PUBLIC,
    "auth.reauth": Access.SIGNED_IN,
    "auth.register": Access.PUBLIC,
    "auth.confirm": Access.PUBLIC,
    "auth.reset_request": Access.PUBLIC,
    "auth.reset_password": Access.PUBLIC,
    "account.index": Access.SIGNED_IN,
    "account.session_check": Access.SIGNED_IN,  # 401, not sign-in; own origin only
    "account.update_profile": Access.SIGNED_IN,
    "account.change_email": Access.SIGNED_IN,
    "account.confirm_email": Access.PUBLIC,
    "account.change_password": Access.SIGNED_IN,
    "account.two_factor_setup": Access.SIGNED_IN,
    "account.two_factor_disable": Access.SIGNED_IN,
    "account.regenerate_recovery_codes": Access.SIGNED_IN,
    "account.revoke": Access.SIGNED_IN,
    "account.revoke_all_sessions": Access.SIGNED_IN,
    "account.delete_account": Access.SIGNED_IN,
    "account.export_data": Access.SIGNED_IN,
    "setup.create_admin": Access.PUBLIC,
    "static": Access.PUBLIC,
    "content.list_articles": Access.PUBLIC,
    "content.show_article": Access.PUBLIC,
    "content.new_article": Access.EDITOR,
    "content.edit_article": Access.EDITOR,
    "content.delete_article": Access.EDITOR,
    "content.add_comment": Access.SIGNED_IN,
    "content.edit_comment": Access.SIGNED_IN,
    "content.delete_comment": Access.SIGNED_IN,
    "profiles.show_profile": Access.PUBLIC,
    "admin.home": Access.ADMIN,
    "admin.users": Access.ADMIN,
    "admin.change_role": Access.ADMIN,
    "admin.disable_user": Access.ADMIN,
    "admin.enable_user": Access.ADMIN,
    "admin.sign_out_user": Access.ADMIN,
    "admin.reset_two_factor": Access.ADMIN,
    "admin.delete_user": Access.ADMIN,
    "admin.audit_events": Access.ADMIN,
    "admin.export_audit": Access.ADMIN,
    "admin.security": Access.ADMIN,
    "uploads.serve_upload": Access.PUBLIC,  # visibility follows the owning object
    "uploads.upload_avatar": Access.SIGNED_IN,
    "uploads.upload_article_image": Access.EDITOR,  # plus ownership (can_edit_article)
    "uploads.delete_upload": Access.SIGNED_IN,  # plus ownership (can_delete_upload)
    # API: bearer tokens only (scopes checked per operation); sign-in and docs are public.
    "api.issue_token": Access.PUBLIC,
    "api.refresh_token": Access.PUBLIC,
    "api.revoke_token": Access.PUBLIC,
    "api.get_openapi": Access.PUBLIC,
    "api.get_me": Access.BEARER,
    "api.update_me": Access.BEARER,
    "api.list_articles": Access.BEARER,
    "api.create_article": Access.BEARER,
    "api.get_article": Access.BEARER,
    "api.update_article": Access.BEARER,
    "api.delete_article": Access.BEARER,
    "api.list_comments": Access.BEARER,
    "api.create_comment": Access.BEARER,
    "api.delete_comment": Access.BEARER,
    "api.list_tokens": Access.BEARER,
    "api.create_token": Access.BEARER,
    "api.delete_token": Access.BEARER,
    "api_web.docs": Access.PUBLIC,
    "api_web.tokens": Access.SIGNED_IN,
    "api_web.create_token": Access.SIGNED_IN,
    "api_web.revoke_token": Access.SIGNED_IN,
}


@pytest.mark.asvs("V8.1.1", "V8.2.1", "V8.3.1")
def test_every_route_has_the_reviewed_policy(app: Flask) -> None:
    actual = {endpoint: policy for _, endpoint, policy in route_policies(app)}
    unknown = sorted(set(actual) - set(EXPECTED))
    assert not unknown, f"routes without a reviewed policy in EXPECTED: {unknown}"
    assert actual == {k: v for k, v in EXPECTED.items() if k in actual}
    assert set(EXPECTED) <= set(actual), "EXPECTED names routes that no longer exist"


@pytest.mark.asvs("V8.3.1")
def test_a_view_without_policy_stops_the_app(app: Flask) -> None:
    bp = Blueprint("careless", __name__)

    @bp.get("/careless")
    def careless() -> str:
        return "open door"

    fresh = Flask("probe")
    fresh.register_blueprint(bp)
    with pytest.raises(RuntimeError, match="careless.careless"):
        check_every_view_has_policy(fresh)


@pytest.mark.asvs("V8.2.1")
def test_signed_in_route_sends_anonymous_users_to_login(client) -> None:  # type: ignore[no-untyped-def]
    resp = client.post("/auth/logout")
    # CSRF refuses first (400) or the policy redirects; neither signs anything out.
    assert resp.status_code in (302, 400)

    token = csrf_token(client, "/auth/login")
    resp = client.post("/auth/logout", data={"csrf_token": token})
    assert resp.status_code == 302
    assert resp.headers["Location"].startswith("/auth/login")


@pytest.mark.asvs("V3.7.2")
def test_a_form_sent_after_the_session_ended_leads_back_to_its_page(app: Flask) -> None:
    """A comment posted once the session had ended (idle timeout, "sign out everywhere")
    went to sign-in with the comment's own address as ``next``, which answers no GET: after
    signing in, the reader met "405 Method Not Allowed" instead of the article. The page
    the form was on (the Referer, this origin's only: ``referring_page``) is the target."""
    from bastion.auth.sessions import revoke_all
    from tests.factories import ArticleFactory, UserFactory
    from tests.support.roles import client_for, token

    article = ArticleFactory(status="published")
    reader = UserFactory(role_name="viewer")
    client = client_for(app, reader)
    csrf = token(client)  # the page's form, loaded while still signed in
    revoke_all(reader.id)
    page = f"/articles/{article.id}?page=2"
    resp = client.post(f"/articles/{article.id}/comments",
                       headers={"Referer": f"https://localhost{page}"},
                       data={"csrf_token": csrf, "body": "Written before the session ended"})
    assert resp.status_code == 302
    assert resp.headers["Location"] == f"/auth/login?next=/articles/{article.id}?page%3D2"
    login = resp.headers["Location"]
    form = client.get(login).get_data(as_text=True)
    assert f'name="next" type="hidden" value="{page}"' in form.replace("&amp;", "&")
    signed_in = client.post(login, data={"username": reader.username, "password": PASSWORD,
                                         "next": page, "csrf_token": csrf_token(client, login)})
    assert signed_in.headers["Location"] == page
    assert client.get(page).status_code == 200


@pytest.mark.asvs("V8.2.1")
def test_a_viewer_turned_away_from_writing_is_told_why_and_what_to_do(app: Flask) -> None:
    """A new account is a viewer: "You are not allowed to do that." left it guessing."""
    from tests.factories import UserFactory
    from tests.support.roles import client_for

    client = client_for(app, UserFactory(role_name="viewer"))
    resp = client.get("/articles/new")
    assert resp.status_code == 403
    text = resp.get_data(as_text=True)
    assert "Writing and editing articles is for editors" in text
    assert "An admin can make you an editor." in text
