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


def _admin_disable_then_enable(app: Flask, user: User) -> None:
    from bastion.admin import services as admin

    admin.set_disabled(None, user, True)
    admin.set_disabled(None, user, False)  # coming back brings no sign-in back


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
    "admin: disable, then enable": _admin_disable_then_enable,
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

