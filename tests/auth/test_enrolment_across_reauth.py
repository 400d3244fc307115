"""A re-authentication in the middle of a 2FA set-up keeps the key the page showed.

The set-up page needs a recent password. Someone who scans its QR code and then takes longer
than ``REAUTH_MINUTES`` to type the first code is sent to re-authenticate; the page they come
back to must show the key their app now holds, and take its code.
"""

from __future__ import annotations

from datetime import timedelta

import pyotp
from flask.testing import FlaskClient
from sqlalchemy import update

from bastion.extensions import db
from bastion.models import User, UserSession, utcnow
from tests.factories import PASSWORD
from tests.support.account_fixtures import sign_in
from tests.support.accounts import post_form, shown_totp_secret


def _shown(client: FlaskClient) -> str | None:
    return shown_totp_secret(client.get("/account/2fa").get_data(as_text=True))


def test_the_key_scanned_before_a_reauthentication_is_the_one_enrolled(
    client: FlaskClient, user: User
) -> None:
    sign_in(client, "alice")
    scanned = _shown(client)
    assert scanned
    # The owner scans the code, then the window of the password typed at sign-in passes.
    db.session.execute(update(UserSession).values(reauth_at=utcnow() - timedelta(hours=1)))
    db.session.commit()
    sent = post_form(client, "/account", {"code": pyotp.TOTP(scanned).now()},
                     action="/account/2fa")
    assert sent.status_code == 302 and sent.headers["Location"].startswith("/auth/reauth")
    again = post_form(client, "/auth/reauth", {"password": PASSWORD, "next": "/account/2fa"})
    assert again.status_code == 302 and again.headers["Location"] == "/account/2fa"
    assert _shown(client) == scanned
    done = post_form(client, "/account/2fa", {"code": pyotp.TOTP(scanned).now()})
    assert done.status_code == 200 and done.data.count(b"<li><code>") == 10
    db.session.refresh(user)
    assert user.has_2fa


def test_another_browser_still_never_enrols_the_key_after_reauthenticating(
    client: FlaskClient, user: User
) -> None:
    """Only this browser's own mark goes across its re-authentication: a browser that was
    never shown the key gets a new one, as before."""
    sign_in(client, "alice")
    shown_here = _shown(client)
    other = client.application.test_client()
    sign_in(other, "alice")
    post_form(other, "/auth/reauth", {"password": PASSWORD, "next": "/account/2fa"})
    assert _shown(other) not in (None, shown_here)
