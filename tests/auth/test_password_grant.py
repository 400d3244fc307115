"""A session or an API token stands on the password checked for it, and dies when that changes.

``revoke_all`` ends the sessions that exist when a password changes. A sign-in whose
password check began just before the change finishes after it, with a record created
after ``revoke_all`` ran: the session keeps, in its signed cookie, a fingerprint of the
password it was granted on (the time it was set), and is refused once it was set again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from flask import Flask

from bastion.extensions import db
from bastion.models import User
from tests.api.conftest import Api
from tests.factories import PASSWORD, UserFactory
from tests.support.account_fixtures import enable_2fa, is_signed_in, sign_in
from tests.support.accounts import post_form, unused_code
from tests.support.auth import csrf_token

NEW_PASSWORD = "a brand new passphrase 42"

pytestmark = [pytest.mark.postgres]


@pytest.fixture
def two_workers(make_app: Callable[..., Flask]) -> tuple[Flask, Flask]:
    """The site and a second worker on the same database, where the owner acts."""
    site = make_app(backend="postgres")
    return site, make_app(DATABASE_URL=site.config["DATABASE_URL"])


def _change_password_on(worker: Flask, username: str) -> None:
    from bastion.account import services as account
    from bastion.auth.services import find_login_user

    with worker.test_request_context():
        owner = find_login_user(username)
        assert owner is not None
        account.change_password(owner, PASSWORD, NEW_PASSWORD)
        db.session.remove()


@contextmanager
def _password_changes_during_the_check(
    monkeypatch: pytest.MonkeyPatch, worker: Flask, username: str
) -> Iterator[None]:
    """The next password check verifies the old password, then the owner changes it."""
    from bastion.security import passwords

    verify = passwords.verify_password
    pending = [True]

    def verify_then_change(stored: str | None, password: str) -> bool:
        ok = verify(stored, password)
        if pending:  # once
            pending.clear()
            _change_password_on(worker, username)
        return ok

    with monkeypatch.context() as patch:
        patch.setattr(passwords, "verify_password", verify_then_change)
        yield


def _new_user(site: Flask, *, totp: bool = False) -> tuple[str, str | None]:
    with site.app_context():
        user = UserFactory()
        secret = enable_2fa(user) if totp else None
        db.session.commit()
        name = user.username
        db.session.remove()
    return name, secret


@pytest.mark.asvs("V7.4.3")
def test_a_sign_in_racing_a_password_change_does_not_stay_signed_in(
    two_workers: tuple[Flask, Flask], monkeypatch: pytest.MonkeyPatch
) -> None:
    site, worker = two_workers
    username, _ = _new_user(site)
    browser = site.test_client()
    with _password_changes_during_the_check(monkeypatch, worker, username):
        assert sign_in(browser, username).status_code == 302  # the old password was right
    assert not is_signed_in(browser)
    with site.app_context():
        user = db.session.scalar(db.select(User).where(User.username == username))
        assert user is not None
        assert all(s.revoked_at is not None for s in user.sessions)
    fresh = site.test_client()
    sign_in(fresh, username, NEW_PASSWORD)
    assert is_signed_in(fresh)


@pytest.mark.asvs("V7.4.1", "V7.4.3")
def test_a_token_request_racing_a_password_change_gets_tokens_that_die_with_it(
    two_workers: tuple[Flask, Flask], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tokens belong to no revoked family and their ``iat`` is after the change."""
    site, worker = two_workers
    username, _ = _new_user(site)
    api = Api(site.test_client())
    with _password_changes_during_the_check(monkeypatch, worker, username):
        issued = api.call("POST", "/auth/token", json={"username": username, "password": PASSWORD})
    assert issued.status_code == 200, issued.get_json()
    pair = issued.get_json()
    assert api.call("GET", "/me", pair["access_token"]).status_code == 401
    refresh = api.call("POST", "/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert refresh.status_code == 401
    fresh = api.call("POST", "/auth/token", json={"username": username, "password": NEW_PASSWORD})
    assert api.call("GET", "/me", fresh.get_json()["access_token"]).status_code == 200


@pytest.mark.asvs("V7.4.3")
def test_a_password_changed_between_password_and_code_ends_the_new_session(
    two_workers: tuple[Flask, Flask],
) -> None:
    """No session stands on the password checked at the first step once it has changed:
    the half-finished sign-in ends with the change, and the password is asked again."""
    site, worker = two_workers
    username, secret = _new_user(site, totp=True)
    assert secret is not None
    browser = site.test_client()
    first = sign_in(browser, username)
    assert first.status_code == 302, first.get_data(as_text=True)[:3000]
    assert first.headers["Location"].endswith("/auth/2fa")
    _change_password_on(worker, username)
    with site.app_context():
        last_step = db.session.scalar(
            db.select(User.totp_last_step).where(User.username == username)
        )
    code = unused_code(secret, last_step)
    step = browser.get("/auth/2fa")
    assert step.status_code == 302 and step.headers["Location"].startswith("/auth/login")
    token = csrf_token(browser, "/auth/login")
    late = browser.post("/auth/2fa", data={"csrf_token": token, "code": code})
    assert late.status_code == 302 and late.headers["Location"].startswith("/auth/login")
    assert not is_signed_in(browser)


@pytest.mark.asvs("V7.4.3")
def test_changing_ones_own_password_keeps_this_session_only(
    two_workers: tuple[Flask, Flask],
) -> None:
    site, _ = two_workers
    username, _ = _new_user(site)
    here, elsewhere = site.test_client(), site.test_client()
    for browser in (here, elsewhere):
        sign_in(browser, username)
    form = {"current": PASSWORD, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD}
    assert post_form(here, "/account", form, action="/account/password").status_code == 302
    assert is_signed_in(here)
    assert not is_signed_in(elsewhere)


@pytest.mark.asvs("V6.2.1", "V7.4.1")
def test_a_sign_in_that_rehashes_the_password_ends_nothing(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the operator raises the Argon2 parameters, the next sign-in stores the same
    password hashed again. The other devices' sessions and API tokens must live on."""
    from bastion.security import passwords

    user = UserFactory(username="olga")
    api = Api(app.test_client())
    laptop = app.test_client()
    sign_in(laptop, "olga")
    token = api.tokens_for(user)["access_token"]
    before = user.password_hash
    monkeypatch.setattr(passwords, "needs_rehash", lambda _hash: True)  # parameters raised
    phone = app.test_client()
    sign_in(phone, "olga")
    db.session.refresh(user)
    assert user.password_hash != before  # the phone's sign-in rehashed it
    assert is_signed_in(phone) and is_signed_in(laptop)
    assert api.call("GET", "/me", token).status_code == 200


@pytest.mark.asvs("V7.4.1")
def test_sessions_and_tokens_from_the_earlier_format_live_on_until_the_password_changes(
    app: Flask
) -> None:
    """Earlier versions named the password by a digest of its hash. An upgrade must not sign
    everyone out; a password change still ends those sessions and tokens."""
    import uuid
    from datetime import timedelta

    from bastion.api import tokens
    from bastion.auth.sessions import GRANTED_ON_KEY
    from bastion.security.passwords import hash_fingerprint

    user = UserFactory(username="vera")
    laptop = app.test_client()
    sign_in(laptop, "vera")
    with laptop.session_transaction() as sess:  # the cookie as an earlier version wrote it
        sess[GRANTED_ON_KEY] = hash_fingerprint(user.password_hash)
    old_format = tokens._encode(user, "access", timedelta(minutes=15), jti=uuid.uuid4().hex,
                                family="f" * 32, password=hash_fingerprint(user.password_hash))
    api = Api(app.test_client())
    assert is_signed_in(laptop)
    with laptop.session_transaction() as sess:
        assert sess[GRANTED_ON_KEY] != hash_fingerprint(user.password_hash)  # renamed
    assert api.call("GET", "/me", old_format).status_code == 200
    _change_password_on(app, "vera")
    assert not is_signed_in(laptop)
    assert api.call("GET", "/me", old_format).status_code == 401
