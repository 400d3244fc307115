"""Password reset: no enumeration, single use, one hour, dies with the password."""

from __future__ import annotations

import time
from typing import Any

import pytest
from flask.testing import FlaskClient
from itsdangerous.timed import TimestampSigner
from sqlalchemy import select

from bastion.extensions import db
from bastion.models import User, UserSession
from bastion.security.passwords import verify_password
from tests.factories import PASSWORD, UserFactory
from tests.support.account_fixtures import is_signed_in, sign_in
from tests.support.accounts import Outbox, link_in, post_form

NEW_PW = "lilac harbour quietly 2031"


def _request(client: FlaskClient, email: str) -> Any:
    return post_form(client, "/auth/reset", {"email": email})


def _reset(client: FlaskClient, link: str, pw: str = NEW_PW) -> Any:
    return post_form(client, "/auth/reset", {"password": pw, "confirm": pw}, action=link)


def test_same_answer_whether_or_not_the_email_exists(
    client: FlaskClient, user: User, outbox: Outbox
) -> None:
    known = _request(client, "alice@example.org")
    known_page = client.get(known.headers["Location"]).data
    unknown = _request(client, "nobody@example.org")
    unknown_page = client.get(unknown.headers["Location"]).data
    assert known.status_code == unknown.status_code == 302
    assert known.headers["Location"] == unknown.headers["Location"]
    assert b"If an account uses that address" in known_page
    assert b"If an account uses that address" in unknown_page
    assert len(outbox.to("alice@example.org")) == 1
    assert outbox.to("nobody@example.org") == []


@pytest.mark.asvs("V6.4.3", "V7.4.3")
def test_reset_works_once_never_signs_in_keeps_2fa_and_ends_sessions(
    client: FlaskClient, totp_user: tuple[User, str], outbox: Outbox
) -> None:
    user, _ = totp_user
    _request(client, "tess@example.org")
    link = outbox.link("tess@example.org", "/auth/reset/")
    resp = _reset(client, link)
    assert resp.status_code == 302 and resp.headers["Location"] == "/auth/login"
    assert not is_signed_in(client)  # reset never signs the user in
    db.session.refresh(user)
    assert user.has_2fa  # and never disables 2FA
    assert _reset(client, link, "another fine passphrase 7").status_code == 404  # single use
    # The new password is right, and still only the first of two steps.
    step = sign_in(client, "tess", NEW_PW)
    assert step.status_code == 302 and step.headers["Location"] == "/auth/2fa"
    assert client.get("/account").status_code == 302  # still needs the second factor
    assert client.get("/auth/2fa").status_code == 200
    assert "changed" in str(outbox.to("tess@example.org")[-1]["Subject"])


def test_the_page_after_a_reset_says_plainly_what_happened(
    client: FlaskClient, user: User, outbox: Outbox
) -> None:
    """It said "Your password is changed, every session was signed out and your personal
    access tokens revoked. Sign in now.": one run-on sentence."""
    _request(client, "alice@example.org")
    done = _reset(client, outbox.link("alice@example.org", "/auth/reset/"))
    assert done.headers["Location"] == "/auth/login"
    page = client.get("/auth/login").get_data(as_text=True)
    assert ("Your password is changed. You are signed out everywhere and your personal access "
            "tokens are revoked. Sign in with your new password.") in page


@pytest.mark.asvs("V7.4.3")
def test_reset_ends_every_session(client: FlaskClient, user: User, outbox: Outbox) -> None:
    victim_browser = client.application.test_client()
    sign_in(victim_browser, "alice")
    assert is_signed_in(victim_browser)
    _request(client, "alice@example.org")
    _reset(client, outbox.link("alice@example.org", "/auth/reset/"))
    assert not is_signed_in(victim_browser)
    assert all(s.revoked_at for s in db.session.scalars(select(UserSession)))


@pytest.mark.asvs("V6.4.3")
def test_reset_link_dies_when_the_password_changes(
    client: FlaskClient, user: User, outbox: Outbox
) -> None:
    _request(client, "alice@example.org")
    link = outbox.link("alice@example.org", "/auth/reset/")
    from bastion.auth.services import set_password

    set_password(user, "changed elsewhere meanwhile 5", commit=True)
    assert client.get(link).status_code == 404
    assert _reset(client, link).status_code == 404
    db.session.refresh(user)
    sign_in(client, "alice", "changed elsewhere meanwhile 5")
    assert is_signed_in(client)


@pytest.mark.asvs("V6.4.3")
def test_expired_reset_link_is_refused(
    client: FlaskClient, user: User, outbox: Outbox, monkeypatch: Any
) -> None:
    issued = time.time() - 3601  # issued an hour and a second ago
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: int(issued))
    _request(client, "alice@example.org")
    monkeypatch.undo()
    link = outbox.link("alice@example.org", "/auth/reset/")
    assert client.get(link).status_code == 404
    assert _reset(client, link).status_code == 404
    sign_in(client, "alice", PASSWORD)
    assert is_signed_in(client)


@pytest.mark.asvs("V6.4.3")
@pytest.mark.parametrize("token", ["garbage", "a.b.c", "x" * 2000, "%00", "..%2f..%2fetc"])
def test_forged_reset_tokens_are_404(client: FlaskClient, token: str) -> None:
    assert client.get(f"/auth/reset/{token}").status_code == 404


def test_weak_new_password_is_a_form_error_and_changes_nothing(
    client: FlaskClient, user: User, outbox: Outbox
) -> None:
    before = user.password_hash
    _request(client, "alice@example.org")
    link = outbox.link("alice@example.org", "/auth/reset/")
    resp = _reset(client, link, "password123456")
    assert resp.status_code == 422 and b"too common" in resp.data
    db.session.refresh(user)
    assert user.password_hash == before
    assert _reset(client, link).status_code == 302  # the link still works after a typo


@pytest.mark.asvs("V1.1.1")
@pytest.mark.parametrize("typed", ["ida@bücher.example", "IDA@XN--BCHER-KVA.EXAMPLE"])
def test_a_reset_asked_for_in_another_spelling_reaches_the_account(
    client: FlaskClient, outbox: Outbox, typed: str
) -> None:
    """The address is looked up in its canonical form and the link goes to the address the
    account holds, whichever spelling of the mailbox was typed."""
    UserFactory(username="ida", email="ida@xn--bcher-kva.example")
    assert _request(client, typed).status_code == 302
    link = outbox.link("ida@xn--bcher-kva.example", "/auth/reset/")
    assert _reset(client, link).status_code == 302
    sign_in(client, "ida@bücher.example", NEW_PW)
    assert is_signed_in(client)


@pytest.mark.asvs("V2.2.1")
def test_a_reset_for_an_invalid_idn_domain_is_a_form_error(
    client: FlaskClient, outbox: Outbox
) -> None:
    resp = _request(client, "ida@xn--zz.example")
    assert resp.status_code == 422
    assert b"Enter a valid email address." in resp.data
    assert not outbox.messages()


def _admin_sign_out(user: User) -> None:
    from bastion.admin.services import sign_out_everywhere

    sign_out_everywhere(None, user)


def _disable_then_enable(user: User) -> None:
    from bastion.admin.services import set_disabled

    set_disabled(None, user, True)
    set_disabled(None, user, False)


def _two_factor_reset(user: User) -> None:
    from bastion.admin.services import reset_two_factor

    reset_two_factor(None, user, confirmation=user.username, reason="video call, ID checked")


@pytest.mark.asvs("V6.4.3", "V7.4.2", "V7.4.5")
@pytest.mark.parametrize(
    "lock_out", [_admin_sign_out, _disable_then_enable, _two_factor_reset],
    ids=["admin signs the user out", "disabled, then enabled", "second factor reset"],
)
def test_a_reset_link_dies_whenever_every_session_of_the_account_ends(
    client: FlaskClient, totp_user: tuple[User, str], outbox: Outbox, lock_out: Any
) -> None:
    """An admin throwing an intruder out (who may read the mailbox or have asked for the
    link) must not leave a reset link that takes the account straight back."""
    user, _ = totp_user
    _request(client, "tess@example.org")
    link = outbox.link("tess@example.org", "/auth/reset/")
    lock_out(user)
    assert client.get(link).status_code == 404
    assert _reset(client, link).status_code == 404
    db.session.refresh(user)
    sign_in(client, "tess", NEW_PW)
    assert not is_signed_in(client) and client.get("/auth/2fa").status_code == 302


@pytest.mark.asvs("V6.4.3")
def test_a_reset_link_posted_from_another_accounts_browser_changes_only_its_own_account(
    client: FlaskClient, user: User, outbox: Outbox
) -> None:
    """The link acts for the account it was mailed for, whoever's browser opens it: it
    neither signs that browser in as that account nor touches the account signed in."""
    bob = UserFactory(username="bob", email="bob@example.org")
    _request(client, "alice@example.org")
    link = outbox.link("alice@example.org", "/auth/reset/")
    sign_in(client, "bob")
    assert _reset(client, link).status_code == 302
    me = client.get("/account")
    assert me.status_code == 200 and b"bob@example.org" in me.data  # still bob, not alice
    db.session.refresh(bob)
    db.session.refresh(user)
    assert verify_password(bob.password_hash, PASSWORD)
    assert verify_password(user.password_hash, NEW_PW)
    alice_sessions = select(UserSession).where(UserSession.user_id == user.id)
    assert all(s.revoked_at for s in db.session.scalars(alice_sessions))


@pytest.mark.asvs("V6.4.3")
def test_a_reset_done_in_another_accounts_browser_says_whose_password_changed(
    client: FlaskClient, user: User, smtp_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """That browser's page said "Your password is changed, every session was signed out"
    of an account that is not the one signed in, whose sessions all live on."""
    monkeypatch.setitem(client.application.config, "MAIL_URL", smtp_server.url)
    UserFactory(username="bob", email="bob@example.org")
    _request(client, "alice@example.org")
    link = link_in(smtp_server.mailbox.to("alice@example.org"), "/auth/reset/")
    sign_in(client, "bob")
    assert "the password of the account <strong>alice</strong>" in client.get(link).get_data(
        as_text=True)
    done = _reset(client, link)
    assert done.status_code == 302 and done.headers["Location"] == "/"
    page = client.get("/").get_data(as_text=True)
    assert ("The password of alice is changed: that account is signed out everywhere and its "
            "personal access tokens are revoked. You are still signed in as bob, whose "
            "password stays as it was.") in page
    assert "Your password is changed" not in page
    assert is_signed_in(client)
