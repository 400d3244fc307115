"""Every way the site ends a user's sessions also ends their API tokens, at once.

Each path goes through ``bastion.auth.sessions.revoke_all`` or, for a promotion,
``bastion.admin.services.end_sign_ins``, which call the API's single rule
(``bastion.api.tokens.revoke_all_for_user``): refresh families are revoked AND the access
tokens issued from them are refused, not merely left to expire. Personal access tokens end
too, except on a promotion: docs/authorization.md keeps them there, capped by the role that
made them (and refused while a role requiring 2FA has none).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask

from bastion.api import tokens
from bastion.models import User
from tests.api.conftest import Api, enable_totp
from tests.factories import PASSWORD, UserFactory
from tests.support.account_fixtures import sign_in
from tests.support.accounts import post_form

NEW_PASSWORD = "a brand new passphrase 42"
REASON = "video call, ID document checked"


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


def _admin_promote(app: Flask, user: User) -> None:
    from bastion.admin import services as admin

    admin.set_role(UserFactory(role_name="admin"), user, "editor")


def _admin_reset_2fa(app: Flask, user: User) -> None:
    from bastion.admin import services as admin

    with app.test_request_context():  # the notice email carries an absolute link
        admin.reset_two_factor(UserFactory(role_name="admin"), user,
                               confirmation=user.username, reason=REASON)


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
    "admin: promote": _admin_promote,
    "cli: users set-role (promotion)": _cli("users", "set-role", "{user}", "editor"),
    "admin: 2FA reset": _admin_reset_2fa,
    "cli: users reset-2fa": _cli("users", "reset-2fa", "{user}", "--reason", REASON),
}
# Promoted from viewer (to editor, whose role needs no 2FA, so that only revocation can
# refuse the old tokens); a 2FA reset needs a second factor to reset, enrolled beforehand.
START_ROLE = {"admin: promote": "viewer", "cli: users set-role (promotion)": "viewer"}
ENROLLED = {"admin: 2FA reset", "cli: users reset-2fa"}
# docs/authorization.md: "a promotion ends the user's sessions and API refresh tokens ...;
# personal access tokens stay, capped by the role that made them".
PERSONAL_TOKENS_STAY = set(START_ROLE)


@pytest.mark.asvs("V7.4.1", "V7.4.2", "V7.4.3", "V7.4.5")
@pytest.mark.parametrize("path", PATHS)
def test_ending_sessions_ends_api_tokens(
    path: str, app: Flask, api: Api, make_user: Callable[..., User]
) -> None:
    user = make_user(START_ROLE.get(path, "editor"))
    if path in ENROLLED:
        enable_totp(user)
    pairs = [tokens.issue_pair(user), tokens.issue_pair(user)]
    personal = api.pat_for(user, ["articles:read"])
    bystander = tokens.issue_pair(make_user())
    assert api.call("GET", "/me", personal).status_code == 200
    PATHS[path](app, user)
    for pair in pairs:
        me = api.call("GET", "/me", pair.access_token)
        assert me.status_code == 401, me.get_json()
        refresh = api.call("POST", "/auth/refresh", json={"refresh_token": pair.refresh_token})
        assert refresh.status_code == 401
    with_personal = api.call("GET", "/me", personal)
    assert with_personal.status_code == (200 if path in PERSONAL_TOKENS_STAY else 401)
    if path != "cli: sessions revoke --all":
        assert api.call("GET", "/me", bystander.access_token).status_code == 200

