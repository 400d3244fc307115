"""Rotating SECRET_KEY (the old key kept in SECRET_KEY_FALLBACKS) keeps every second factor:
TOTP secrets open under the old key and are sealed again under the new one, recovery codes
still match, and ``secret-key reseal`` lets the old key go."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.fernet import Fernet
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import select

from bastion.auth import twofactor
from bastion.extensions import db
from bastion.models import AuditEvent, User
from tests.factories import UserFactory
from tests.support.account_fixtures import is_signed_in, sign_in
from tests.support.accounts import post_form, unused_code

NEW_KEY = "n3w-" + "Qm7Rt5Yp1Vb8Nc4Hd6Jf0Gs3AeZx9Qw2L" * 2
LOST_KEY = "l0st-" + "Hd6Jf0Gs3AeZx9Qw2LQm7Rt5Yp1Vb8Nc4" * 2


def _rotate(app: Flask, monkeypatch: pytest.MonkeyPatch, *, keep_old: bool = True) -> str:
    """Make NEW_KEY the key; the old one a fallback (or gone). Returns the old key."""
    old = str(app.config["SECRET_KEY"])
    monkeypatch.setitem(app.config, "SECRET_KEY_FALLBACKS", [old] if keep_old else [])
    monkeypatch.setitem(app.config, "SECRET_KEY", NEW_KEY)
    return old


def _sealed_under(key: str, sealed: str | None) -> bool:
    """Whether ``sealed`` opens with the TOTP Fernet derived from ``key``."""
    assert sealed is not None
    try:
        twofactor._fernet(key).decrypt(sealed.encode())
    except Exception:
        return False
    return True


def _code_step(client: FlaskClient, code: str) -> Any:
    return post_form(client, "/auth/2fa", {"code": code})


def _signs_in_with_totp(client: FlaskClient, user: User, secret: str) -> bool:
    sign_in(client, user.username)
    db.session.refresh(user)
    _code_step(client, unused_code(secret, user.totp_last_step))
    return is_signed_in(client)


@pytest.mark.asvs("V6.3.3", "V11.2.2")
def test_a_totp_code_works_after_rotation_and_reseals_the_secret(
    app: Flask, client: FlaskClient, totp_user: tuple[User, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    user, secret = totp_user
    user.totp_last_step = None
    db.session.commit()
    old = _rotate(app, monkeypatch)
    assert _sealed_under(old, user.totp_secret)
    assert _signs_in_with_totp(client, user, secret)
    db.session.refresh(user)
    assert _sealed_under(NEW_KEY, user.totp_secret) and not _sealed_under(old, user.totp_secret)
    # The new seal holds the same secret: the fallback is no longer needed for this user.
    monkeypatch.setitem(app.config, "SECRET_KEY_FALLBACKS", [])
    assert twofactor._secret_of(user) == secret


@pytest.mark.asvs("V6.5.1", "V6.5.2")
def test_a_recovery_code_made_before_rotation_works_once(
    app: Flask, client: FlaskClient, totp_user: tuple[User, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    user, _ = totp_user
    code = user._test_recovery_codes[0]
    _rotate(app, monkeypatch)
    sign_in(client, "tess")
    assert _code_step(client, code).status_code == 302
    assert is_signed_in(client)
    other = app.test_client()
    sign_in(other, "tess")
    assert _code_step(other, code).status_code == 200  # consumed, as before the rotation
    assert not is_signed_in(other)
    assert twofactor.remaining_recovery_codes(user) == 9


@pytest.mark.asvs("V6.3.3")
def test_without_the_fallback_an_old_secret_is_a_wrong_code_not_an_error(
    app: Flask, client: FlaskClient, totp_user: tuple[User, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The old key dropped too early: the factor cannot be checked, so the sign-in is
    refused like a wrong code (the owner uses a new recovery code or an admin reset)."""
    user, secret = totp_user
    user.totp_last_step = None
    db.session.commit()
    sealed = user.totp_secret
    _rotate(app, monkeypatch, keep_old=False)
    sign_in(client, "tess")
    refused = _code_step(client, unused_code(secret, None))
    assert refused.status_code == 200 and b"That code is not right" in refused.data
    refused = _code_step(client, user._test_recovery_codes[0])
    assert refused.status_code == 200 and b"That code is not right" in refused.data
    assert not is_signed_in(client)
    db.session.refresh(user)
    assert user.totp_secret == sealed and user.has_2fa  # nothing was thrown away


@pytest.mark.asvs("V6.3.3", "V11.2.2")
def test_an_enrolment_begun_before_rotation_can_be_finished(
    app: Flask, user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The secret shown (and the session's mark of it) were made under the old key."""
    secret = twofactor.pending_secret(user)
    assert secret is not None
    mark = twofactor.enrolment_mark(secret)
    _rotate(app, monkeypatch)
    assert twofactor.is_shown_secret(user, mark)
    assert twofactor.pending_secret(user) == secret  # the page shows the same QR code again
    assert twofactor.enable(user, unused_code(secret, None)) is not None
    db.session.refresh(user)
    assert user.has_2fa and _sealed_under(NEW_KEY, user.totp_secret)


@pytest.mark.asvs("V11.2.2", "V6.3.3", "V16.2.1")
def test_reseal_command_lets_the_fallback_go(
    app: Flask, client: FlaskClient, runner: FlaskCliRunner, totp_user: tuple[User, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    user, secret = totp_user
    user.totp_last_step = None
    enrolling = UserFactory(username="enid", email="enid@example.org")
    pending = twofactor.pending_secret(enrolling)
    lost = UserFactory(username="lost", email="lost@example.org")
    lost_seal = Fernet(Fernet.generate_key()).encrypt(b"JBSWY3DPEHPK3PXP").decode()
    lost.totp_secret = lost_seal  # sealed under a key this app never had
    db.session.commit()
    old = _rotate(app, monkeypatch)

    result = runner.invoke(args=["secret-key", "reseal", "--batch-size", "1"])
    assert result.exit_code == 0, result.output
    assert "2 TOTP secret(s) sealed again under the current key, 0 already were" in result.output
    assert f"(user ids: {lost.id})" in result.output
    for done in (user, enrolling):
        db.session.refresh(done)
        assert _sealed_under(NEW_KEY, done.totp_secret) and not _sealed_under(old, done.totp_secret)
    db.session.refresh(lost)
    assert lost.totp_secret == lost_seal  # reported, not changed
    (event,) = db.session.scalars(
        select(AuditEvent).where(AuditEvent.event == "cli.totp_secrets_resealed"))
    assert event.details["resealed"] == 2 and event.details["unreadable"] == 1
    assert event.details["via"] == "cli"

    again = runner.invoke(args=["secret-key", "reseal"])
    assert "0 TOTP secret(s) sealed again under the current key, 2 already were" in again.output

    monkeypatch.setitem(app.config, "SECRET_KEY_FALLBACKS", [])
    assert _signs_in_with_totp(client, user, secret)
    assert twofactor._secret_of(enrolling) == pending


@pytest.mark.asvs("V6.3.3")
def test_a_secret_replaced_meanwhile_is_not_resealed_over(
    app: Flask, totp_user: tuple[User, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reseal writes only over the very value it opened: a new enrolment or a reset
    committed meanwhile must not be undone by an old secret coming back."""
    user, _ = totp_user
    sealed = user.totp_secret
    assert sealed is not None
    _rotate(app, monkeypatch)
    twofactor.clear(user)
    db.session.commit()
    assert twofactor._reseal(user.id, sealed) is None
    db.session.commit()
    db.session.refresh(user)
    assert user.totp_secret is None

