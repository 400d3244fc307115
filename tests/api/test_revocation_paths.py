"""Every way the site ends a user's sessions also ends their API tokens, at once.

Each path goes through ``bastion.auth.sessions.revoke_all``, which calls the API's single
rule (``bastion.api.tokens.revoke_all_for_user``): refresh families are revoked AND the
access tokens issued from them are refused, not merely left to expire.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask

from bastion.api import tokens
from bastion.extensions import db
from bastion.models import User
from tests.api.conftest import Api
from tests.factories import PASSWORD, UserFactory
from tests.support.account_fixtures import sign_in
from tests.support.accounts import post_form

NEW_PASSWORD = "a brand new passphrase 42"


def _account_sign_out_everywhere(app: Flask, user: User) -> None:
    browser = app.test_client()
    assert sign_in(browser, user.username).status_code == 302
    resp = post_form(browser, "/account", {}, action="/account/sessions/revoke-all")
    assert resp.headers["Location"] == "/auth/login"


def _account_password_change(app: Flask, user: User) -> None:
    browser = app.test_client()
    sign_in(browser, user.username)
    resp = post_form(browser, "/account", {"current": PASSWORD, "password": NEW_PASSWORD,
                                            "confirm": NEW_PASSWORD},
                     action="/account/password")
    assert resp.status_code == 302, resp.get_data(as_text=True)[:500]


def _password_reset(app: Flask, user: User) -> None:
    from bastion.auth import links, registration

    with app.test_request_context():  # the notice email carries an absolute link
        assert registration.reset_password(links.make_token("reset", user), NEW_PASSWORD)


def _admin_sign_out(app: Flask, user: User) -> None:
    from bastion.admin import services as admin

    admin.sign_out_everywhere(UserFactory(role_name="admin"), user)


def _admin_disable(app: Flask, user: User) -> None:
    from bastion.admin import services as admin

    admin.set_disabled(UserFactory(role_name="admin"), user, True)


def _cli(*args: str) -> Callable[[Flask, User], None]:
    def run(app: Flask, user: User) -> None:
        result = app.test_cli_runner().invoke(args=[a.format(user=user.username) for a in args])
        assert result.exit_code == 0, result.output

    return run


PATHS: dict[str, Callable[[Flask, User], None]] = {
    "account: sign out everywhere": _account_sign_out_everywhere,
    "account: password change": _account_password_change,
    "password reset link": _password_reset,
    "admin: sign out": _admin_sign_out,
    "admin: disable": _admin_disable,
    "cli: sessions revoke": _cli("sessions", "revoke", "{user}"),
    "cli: sessions revoke --all": _cli("sessions", "revoke", "--all"),
    "cli: users disable": _cli("users", "disable", "{user}"),
}


@pytest.mark.asvs("V7.4.1", "V7.4.2", "V7.4.3", "V7.4.5")
@pytest.mark.parametrize("path", PATHS)
def test_ending_sessions_ends_api_tokens(
    path: str, app: Flask, api: Api, make_user: Callable[..., User]
) -> None:
    user = make_user("editor")
    pairs = [tokens.issue_pair(user), tokens.issue_pair(user)]
    bystander = tokens.issue_pair(make_user())
    PATHS[path](app, user)
    for pair in pairs:
        me = api.call("GET", "/me", pair.access_token)
        assert me.status_code == 401, me.get_json()
        refresh = api.call("POST", "/auth/refresh", json={"refresh_token": pair.refresh_token})
        assert refresh.status_code == 401
    if path != "cli: sessions revoke --all":
        assert api.call("GET", "/me", bystander.access_token).status_code == 200


@pytest.mark.postgres
@pytest.mark.asvs("V7.4.1", "V7.4.3")
def test_a_sign_in_racing_a_password_change_gets_tokens_that_die_with_it(
    make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The token request checks the old password; while Argon2 runs, the owner changes it
    (another worker: every session and token family revoked). The tokens issued next
    belong to no revoked family and their ``iat`` is after the change; they must still
    be refused, because the password they stand on is no longer the stored one."""
    from bastion.account import services as account
    from bastion.auth.services import find_login_user
    from bastion.security import passwords

    site = make_app(backend="postgres")
    other_worker = make_app(DATABASE_URL=site.config["DATABASE_URL"])
    with site.app_context():
        username = UserFactory().username
        db.session.commit()
        db.session.remove()
    verify = passwords.verify_password

    def verify_while_the_password_changes(stored: str | None, password: str) -> bool:
        ok = verify(stored, password)
        monkeypatch.setattr(passwords, "verify_password", verify)  # once
        with other_worker.test_request_context():
            owner = find_login_user(username)
            assert owner is not None
            account.change_password(owner, PASSWORD, NEW_PASSWORD, keep_session_id=None)
            db.session.remove()
        return ok

    monkeypatch.setattr(passwords, "verify_password", verify_while_the_password_changes)
    client = Api(site.test_client())
    issued = client.call("POST", "/auth/token", json={"username": username, "password": PASSWORD})
    assert issued.status_code == 200, issued.get_json()
    pair = issued.get_json()
    assert client.call("GET", "/me", pair["access_token"]).status_code == 401
    refresh = client.call("POST", "/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert refresh.status_code == 401
    fresh = client.call(
        "POST", "/auth/token", json={"username": username, "password": NEW_PASSWORD}
    )
    assert client.call("GET", "/me", fresh.get_json()["access_token"]).status_code == 200
