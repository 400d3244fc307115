"""A stored password replaced on the strength of an older one, while a reset commits.

Whoever knows the account's password (a thief) keeps sending requests that act on it; the
owner resets the password meanwhile to lock them out. A request whose password was checked
before the reset committed must not store its own hash over the owner's new one: not a
password change (the thief would keep the account, and a new session for it), nor the
upgrade of an old hash a sign-in makes (the old password would be back).
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from bastion.account import services as account_services
from bastion.extensions import db
from bastion.models import User
from bastion.security import passwords
from bastion.security.passwords import verify_password
from tests.factories import PASSWORD
from tests.support.account_fixtures import is_signed_in, sign_in
from tests.support.accounts import Outbox, post_form
from tests.support.auth import csrf_token
from tests.support.races import elsewhere

OWNERS = "lilac harbour quietly 2031"
THIEFS = "copper lantern sideways 77"


def _owner_resets_meanwhile(app: Flask, outbox: Outbox) -> Any:
    """The owner's reset, ready to post from a browser of its own in another thread."""
    post_form(app.test_client(), "/auth/reset", {"email": "alice@example.org"})
    link = outbox.link("alice@example.org", "/auth/reset/")
    owner = app.test_client()
    form = {"csrf_token": csrf_token(owner, link), "password": OWNERS, "confirm": OWNERS}
    answers: list[int] = []

    def reset() -> None:
        elsewhere(app, lambda: answers.append(owner.post(link, data=form).status_code))
        assert answers == [302]

    return reset


def _stored_password(user_id: int) -> str:
    db.session.expire_all()
    user = db.session.get(User, user_id)
    assert user is not None
    return user.password_hash


@pytest.mark.asvs("V6.2.3", "V6.4.3", "V2.3.3")
def test_a_change_checked_before_a_reset_committed_is_refused(
    app: Flask, monkeypatch: pytest.MonkeyPatch, user: User, outbox: Outbox
) -> None:
    thief = app.test_client()
    sign_in(thief, "alice")  # signed in moments ago: fresh enough to change the password
    reset = _owner_resets_meanwhile(app, outbox)
    real = account_services.confirm_password

    def checked_then_reset(*args: Any, **kwargs: Any) -> Any:
        checked = real(*args, **kwargs)  # the current password was right, then
        reset()
        return checked

    monkeypatch.setattr(account_services, "confirm_password", checked_then_reset)
    resp = post_form(thief, "/account", {"current": PASSWORD, "password": THIEFS,
                                         "confirm": THIEFS}, action="/account/password")

    assert resp.status_code == 422
    assert account_services.CURRENT_CHANGED_MEANWHILE in resp.get_data(as_text=True)
    stored = _stored_password(user.id)
    assert verify_password(stored, OWNERS)
    assert not verify_password(stored, THIEFS)
    assert not is_signed_in(thief)  # the reset ended the thief's session; none came back


@pytest.mark.asvs("V6.4.3", "V2.3.3")
def test_a_sign_in_upgrading_the_old_hash_keeps_a_reset_committed_meanwhile(
    app: Flask, monkeypatch: pytest.MonkeyPatch, user: User, outbox: Outbox
) -> None:
    reset = _owner_resets_meanwhile(app, outbox)
    monkeypatch.setattr(passwords, "needs_rehash", lambda _hash: True)  # parameters raised
    real = passwords.verify_password
    fired: list[bool] = []

    def verified_then_reset(stored: str | None, password: str) -> bool:
        ok = real(stored, password)
        if ok and password == PASSWORD and not fired:  # the thief's sign-in, once
            fired.append(True)
            reset()
        return ok

    monkeypatch.setattr(passwords, "verify_password", verified_then_reset)
    thief = app.test_client()
    sign_in(thief, "alice")

    assert fired
    stored = _stored_password(user.id)
    assert verify_password(stored, OWNERS)
    assert not verify_password(stored, PASSWORD)  # the old password stays dead
    assert not is_signed_in(thief)
    again: FlaskClient = app.test_client()
    sign_in(again, "alice")
    assert not is_signed_in(again)
