"""A refused form never writes a second-factor code it did not spend back into the page.

Re-authentication checks the code only after the password, and a throttled attempt
checks nothing: a valid, unused recovery code typed there came back in the refused page's
HTML (``value="..."``), a live credential in a page the browser keeps in its history and
that anyone reading the screen or the saved page sees.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.support.account_fixtures import sign_in
from tests.support.accounts import post_form, unused_code


def _signed_in_with_2fa(client: FlaskClient, user: Any, secret: str) -> None:
    sign_in(client, user.username)
    resp = post_form(client, "/auth/2fa", {"code": unused_code(secret, user.totp_last_step)})
    assert resp.status_code == 302 and resp.headers["Location"] == "/"


@pytest.mark.asvs("V6.5.1", "V14.3.3")
def test_a_refused_reauth_does_not_show_the_recovery_code_it_never_checked(
    app: Flask, client: FlaskClient, totp_user: tuple[Any, str]
) -> None:
    user, secret = totp_user
    _signed_in_with_2fa(client, user, secret)
    code = user._test_recovery_codes[0]

    refused = post_form(client, "/auth/reauth", {"password": "not my password at all", "code": code})

    assert refused.status_code == 200
    assert code not in refused.get_data(as_text=True)
    # It was never checked, so it is still the owner's to use.
    from tests.factories import PASSWORD

    assert post_form(client, "/auth/reauth", {"password": PASSWORD, "code": code}).status_code == 302


@pytest.mark.asvs("V6.5.1", "V14.3.3")
def test_a_throttled_second_step_does_not_show_the_code_it_never_checked(
    app: Flask, client: FlaskClient, totp_user: tuple[Any, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    user, _secret = totp_user
    sign_in(client, user.username)
    monkeypatch.setitem(app.config, "LOGIN_THROTTLE_ACCOUNT_FREE", 1)
    assert post_form(client, "/auth/2fa", {"code": "000000"}).status_code == 200  # counted
    code = user._test_recovery_codes[0]

    throttled = post_form(client, "/auth/2fa", {"code": code})

    assert throttled.status_code == 429
    assert code not in throttled.get_data(as_text=True)


@pytest.mark.asvs("V6.5.1", "V14.3.3")
def test_a_throttled_turn_off_does_not_show_the_code_it_never_checked(
    app: Flask, client: FlaskClient, totp_user: tuple[Any, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    user, secret = totp_user
    _signed_in_with_2fa(client, user, secret)
    monkeypatch.setitem(app.config, "LOGIN_THROTTLE_ACCOUNT_FREE", 1)
    wrong = post_form(client, "/account", {"code": "000000"}, action="/account/2fa/disable")
    assert wrong.status_code == 422
    code = user._test_recovery_codes[0]

    throttled = post_form(client, "/account", {"code": code}, action="/account/2fa/disable")

    assert throttled.status_code == 429
    assert code not in throttled.get_data(as_text=True)
    assert user.has_2fa
