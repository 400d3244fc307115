"""Rotating SECRET_KEY (the old key kept in SECRET_KEY_FALLBACKS) keeps every second factor:
TOTP secrets open under the old key and are sealed again under the new one, recovery codes
still match, and ``secret-key reseal`` lets the old key go. Sessions, API tokens and
emailed links made under the old key keep working too, and still die with the password."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from cryptography.fernet import Fernet
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import select, update

from bastion.auth import recovery_keys, twofactor
from bastion.extensions import db
from bastion.models import AuditEvent, RecoveryCode, User
from bastion.security.tokens import key_id
from tests.factories import UserFactory
from tests.support.account_fixtures import enable_2fa, is_signed_in, sign_in
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


def test_a_code_step_begun_before_the_rotation_still_finishes(
    app: Flask, client: FlaskClient, totp_user: tuple[User, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pending-code marker names the account's stamp under the key of its day: a
    rotation between the password and the code does not send the user back to the start."""
    user, secret = totp_user
    assert sign_in(client, user.username).headers["Location"] == "/auth/2fa"
    _rotate(app, monkeypatch)
    db.session.refresh(user)
    assert _code_step(client, unused_code(secret, user.totp_last_step)).status_code == 302
    assert is_signed_in(client)


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
    assert result.exit_code == 1, result.output  # the lost one: the old key must stay
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



# Sessions, API tokens and emailed links made under the old key -------------------------
#
# Each names the password it was granted on by a fingerprint keyed with SECRET_KEY, and
# links are signed with it: while the old key is a fallback they keep working, and a
# password set again since still ends them, whichever key made them.

NEW_PASSWORD = "a brand new passphrase 42"


def _granted_on(client: FlaskClient) -> str:
    from bastion.auth.sessions import GRANTED_ON_KEY

    with client.session_transaction() as sess:
        return str(sess[GRANTED_ON_KEY])


def _claims(token: str) -> dict[str, Any]:
    import jwt

    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


@pytest.mark.asvs("V11.2.2", "V7.2.1")
def test_a_browser_session_lives_through_a_rotation_and_moves_to_the_new_key(
    app: Flask, client: FlaskClient, user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bastion.security.passwords import password_fingerprint

    sign_in(client, "alice")
    old = _rotate(app, monkeypatch)
    assert _granted_on(client) == password_fingerprint(user.password_changed_at, key=old)
    assert is_signed_in(client)
    # Renamed under the new key (and the cookie signed again with it) on that request...
    assert _granted_on(client) == password_fingerprint(user.password_changed_at)
    # ...so the session no longer needs the old key.
    monkeypatch.setitem(app.config, "SECRET_KEY_FALLBACKS", [])
    assert is_signed_in(client)


@pytest.mark.asvs("V11.2.2", "V7.2.1")
def test_without_the_fallback_a_session_from_before_the_rotation_is_signed_out(
    app: Flask, client: FlaskClient, user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cookie no longer verifies; and one signed anew (here by the test) whose
    fingerprint no configured key made is refused and its record ended, not a 500."""
    from bastion.auth.sessions import GRANTED_ON_KEY
    from bastion.models import UserSession
    from bastion.security.passwords import password_fingerprint

    sign_in(client, "alice")
    forged = app.test_client()
    sign_in(forged, "alice")
    _rotate(app, monkeypatch)
    with forged.session_transaction() as sess:  # signed again under the new key
        sess[GRANTED_ON_KEY] = password_fingerprint(user.password_changed_at, key=LOST_KEY)
    monkeypatch.setitem(app.config, "SECRET_KEY_FALLBACKS", [])
    assert client.get("/account").status_code == 302 and not is_signed_in(client)
    assert forged.get("/account").status_code == 302 and not is_signed_in(forged)
    assert sum(s.revoked_at is None for s in db.session.scalars(select(UserSession))) == 1


@pytest.mark.asvs("V11.2.2", "V9.1.1")
def test_api_tokens_issued_before_the_rotation_keep_working(
    app: Flask, user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bastion.security.passwords import password_fingerprint
    from tests.api.conftest import Api

    api = Api(app.test_client())
    pair = api.tokens_for(user)
    _rotate(app, monkeypatch)
    assert api.call("GET", "/me", pair["access_token"]).status_code == 200
    rotated = api.call("POST", "/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert rotated.status_code == 200, rotated.get_json()
    fresh = rotated.get_json()
    # The new pair stands on the password under the new key: it outlives the fallback.
    assert _claims(fresh["access_token"])["pwd"] == password_fingerprint(user.password_changed_at)
    monkeypatch.setitem(app.config, "SECRET_KEY_FALLBACKS", [])
    assert api.call("GET", "/me", fresh["access_token"]).status_code == 200


@pytest.mark.asvs("V11.2.2", "V9.1.1")
def test_without_the_fallback_api_tokens_from_before_the_rotation_are_refused(
    app: Flask, user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.api.conftest import Api

    api = Api(app.test_client())
    pair = api.tokens_for(user)
    _rotate(app, monkeypatch, keep_old=False)
    me = api.call("GET", "/me", pair["access_token"])
    assert me.status_code == 401, me.get_json()
    refresh = api.call("POST", "/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert refresh.status_code == 401, refresh.get_json()


@pytest.mark.asvs("V7.4.1", "V7.4.3")
def test_a_password_change_after_the_rotation_ends_sessions_and_tokens_from_before(
    app: Flask, user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bastion.account.services import change_password
    from tests.api.conftest import Api
    from tests.factories import PASSWORD

    laptop = app.test_client()
    sign_in(laptop, "alice")
    api = Api(app.test_client())
    pair = api.tokens_for(user)
    _rotate(app, monkeypatch)
    assert is_signed_in(laptop)  # now renamed under the new key
    with app.test_request_context():
        change_password(user, PASSWORD, NEW_PASSWORD)
    assert not is_signed_in(laptop)
    assert api.call("GET", "/me", pair["access_token"]).status_code == 401
    refresh = api.call("POST", "/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert refresh.status_code == 401


@pytest.mark.asvs("V7.4.3")
def test_a_grant_made_under_the_old_key_still_dies_with_its_password(
    app: Flask, user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the sessions ended (a sign-in that checked the old password while a change
    committed): only the fingerprint tells, and under the fallback it names the old
    password, not the one set since."""
    import uuid
    from datetime import timedelta

    from bastion.api import tokens
    from bastion.auth.services import set_password
    from bastion.security.passwords import password_fingerprint
    from tests.api.conftest import Api

    phone = app.test_client()
    sign_in(phone, "alice")
    old = _rotate(app, monkeypatch)
    stood_on = password_fingerprint(user.password_changed_at, key=old)
    set_password(user, NEW_PASSWORD, commit=True)  # no session ended, no token revoked
    assert not is_signed_in(phone)
    # Issued after the change (its ``iat`` passes) on the password checked before it.
    raced = tokens._encode(user, "access", timedelta(minutes=15), jti=uuid.uuid4().hex,
                           family="r" * 32, password=stood_on)
    assert Api(app.test_client()).call("GET", "/me", raced).status_code == 401


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.asvs("V11.2.2", "V7.4.1")
def test_workers_restarted_with_the_new_key_take_tokens_from_before_from_their_snapshots(
    make_app: Callable[..., Flask], redis_url: str
) -> None:
    """As deployed: Redis holds the users' stamps and each worker its snapshots of their
    state (``bastion.api.user_states``); the workers restart with the new key."""
    import os

    from tests.api.conftest import Api

    prefix = os.environ["BASTION_TEST_REDIS_PREFIX"]
    shared = {"REDIS_URL": redis_url, "REDIS_PREFIX": prefix, "RATELIMIT_KEY_PREFIX": prefix}
    before = make_app(backend="postgres", **shared)
    old = str(before.config["SECRET_KEY"])
    with before.app_context():
        person = UserFactory(username="wanda", email="wanda@example.org")
        db.session.commit()
        db.session.remove()
    pair = Api(before.test_client()).tokens_for(person)

    def restarted(fallbacks: list[str]) -> Api:
        worker = make_app(DATABASE_URL=before.config["DATABASE_URL"], SECRET_KEY=NEW_KEY,
                          SECRET_KEY_FALLBACKS=fallbacks, **shared)
        return Api(worker.test_client())

    with_old, without = restarted([old]), restarted([])
    for _ in range(2):  # the second call is answered from the worker's snapshot
        assert with_old.call("GET", "/me", pair["access_token"]).status_code == 200
        assert without.call("GET", "/me", pair["access_token"]).status_code == 401


def _request_reset(client: FlaskClient, outbox: Any, address: str) -> str:
    post_form(client, "/auth/reset", {"email": address})
    return str(outbox.link(address, "/auth/reset/"))


def _reset(client: FlaskClient, link: str) -> Any:
    form = {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD}
    return post_form(client, "/auth/reset", form, action=link)


@pytest.mark.asvs("V11.2.2", "V6.4.3")
def test_a_reset_link_mailed_before_the_rotation_works_once(
    app: Flask, client: FlaskClient, user: User, outbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    link = _request_reset(client, outbox, "alice@example.org")
    _rotate(app, monkeypatch)
    assert client.get(link).status_code == 200
    assert _reset(client, link).status_code == 302
    assert client.get(link).status_code == 404  # single use, as before
    sign_in(client, "alice", NEW_PASSWORD)
    assert is_signed_in(client)


@pytest.mark.asvs("V11.2.2", "V6.4.1")
def test_an_email_change_link_made_before_the_rotation_works_once(
    app: Flask, client: FlaskClient, user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bastion.auth import links

    link = f"/account/email/{links.make_token('email_change', user, new='alice2@example.org')}"
    _rotate(app, monkeypatch)
    assert post_form(client, link, {}).status_code == 302
    db.session.refresh(user)
    assert user.email == "alice2@example.org"
    assert client.get(link).status_code == 404


@pytest.mark.asvs("V11.2.2", "V6.4.1")
def test_a_confirmation_link_mailed_before_the_rotation_confirms(
    app: Flask, client: FlaskClient, outbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    post_form(client, "/auth/register", {"username": "newbie", "email": "newbie@example.org",
                                         "password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    link = outbox.link("newbie@example.org", "/auth/confirm/")
    _rotate(app, monkeypatch)
    assert post_form(client, link, {}).status_code == 302
    sign_in(client, "newbie", NEW_PASSWORD)
    assert is_signed_in(client)


@pytest.mark.asvs("V11.2.2", "V6.4.1", "V6.4.3")
@pytest.mark.parametrize("kind", ["reset", "email_change", "confirm"])
def test_without_the_fallback_links_mailed_before_the_rotation_are_dead(
    app: Flask, client: FlaskClient, user: User, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    from bastion.auth import links
    from tests.support.auth import csrf_token

    user.email_confirmed_at = None
    db.session.commit()
    extra = {"new": "alice2@example.org"} if kind == "email_change" else {}
    page = {"reset": "/auth/reset/", "email_change": "/account/email/",
            "confirm": "/auth/confirm/"}[kind]
    link = page + links.make_token(kind, user, **extra)
    _rotate(app, monkeypatch, keep_old=False)
    assert client.get(link).status_code == 404
    form = {"csrf_token": csrf_token(client, "/auth/login"), "password": NEW_PASSWORD,
            "confirm": NEW_PASSWORD}
    assert client.post(link, data=form).status_code == 404
    db.session.refresh(user)
    assert user.email == "alice@example.org" and user.email_confirmed_at is None


@pytest.mark.asvs("V6.4.3")
def test_a_link_made_under_the_old_key_still_expires(
    app: Flask, client: FlaskClient, user: User, outbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from itsdangerous.timed import TimestampSigner

    issued = time.time() - 3601  # RESET_MINUTES is 60
    with monkeypatch.context() as clock:
        clock.setattr(TimestampSigner, "get_timestamp", lambda self: int(issued))
        link = _request_reset(client, outbox, "alice@example.org")
    _rotate(app, monkeypatch)
    assert client.get(link).status_code == 404
    assert _reset(client, link).status_code == 404


@pytest.mark.asvs("V11.2.2")
def test_links_made_after_the_rotation_are_signed_with_the_new_key(
    app: Flask, user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bastion.auth import links

    _rotate(app, monkeypatch)
    token = links.make_token("reset", user)
    monkeypatch.setitem(app.config, "SECRET_KEY_FALLBACKS", [])
    assert links.read_token("reset", token, 3600) is not None


@pytest.mark.asvs("V11.2.2")
def test_during_a_rotation_a_grant_under_the_new_key_costs_one_comparison(
    app: Flask, user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fallbacks are looked at only when the current key's fingerprint did not match:
    the check every signed-in request and API call makes costs what it did before."""
    import hmac
    from types import SimpleNamespace

    from bastion.api import tokens
    from bastion.auth import sessions
    from tests.api.conftest import Api

    _rotate(app, monkeypatch)
    browser = app.test_client()
    sign_in(browser, "alice")
    api = Api(app.test_client())
    access = api.tokens_for(user)["access_token"]

    def no_second_look(*_args: object) -> bool:
        raise AssertionError("a fallback fingerprint was asked for")

    monkeypatch.setattr(sessions, "matches_older_fingerprint", no_second_look)
    assert is_signed_in(browser)
    compared: list[object] = []

    def compare_digest(a: str, b: str) -> bool:
        compared.append(a)
        return hmac.compare_digest(a, b)

    monkeypatch.setattr(tokens, "hmac", SimpleNamespace(compare_digest=compare_digest))
    assert api.call("GET", "/me", access).status_code == 200
    assert len(compared) == 1


def _form_before_and_post_after(
    make_app: Callable[..., Flask], **after: Any
) -> int:
    """A sign-in form opened under OLD_FORM_KEY, sent after a restart with NEW_KEY."""
    import re

    before = make_app(SECRET_KEY=OLD_FORM_KEY).test_client()
    page = before.get("/auth/login")
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.get_data(as_text=True))
    assert token is not None
    cookie = before.get_cookie("__Host-session")
    assert cookie is not None
    client = make_app(SECRET_KEY=NEW_KEY, **after).test_client()
    client.set_cookie("__Host-session", cookie.value)
    form = {"csrf_token": token.group(1), "login": "nobody", "password": "not the password"}
    return client.post("/auth/login", data=form).status_code


OLD_FORM_KEY = "old-form-key-" + "y" * 51


@pytest.mark.asvs("V11.2.2", "V3.5.1")
def test_a_form_opened_before_the_rotation_is_accepted_while_the_old_key_is_a_fallback(
    make_app: Callable[..., Flask],
) -> None:
    # Past the CSRF check: the sign-in itself answers (wrong password), not a 400.
    assert _form_before_and_post_after(make_app, SECRET_KEY_FALLBACKS=[OLD_FORM_KEY]) != 400
    assert _form_before_and_post_after(make_app) == 400  # without the fallback: refused


# Recovery codes name their key ---------------------------------------------------------
def _codes_of(user: User) -> list[RecoveryCode]:
    return list(db.session.scalars(select(RecoveryCode).where(RecoveryCode.user_id == user.id)))


def _reseal(runner: FlaskCliRunner, exit_code: int = 3) -> str:
    """The run's output on one line; 3 while recovery codes still need a fallback key."""
    result = runner.invoke(args=["secret-key", "reseal"])
    assert result.exit_code == exit_code, result.output
    return " ".join(result.output.split())


@pytest.mark.asvs("V6.5.2", "V11.2.2")
def test_recovery_codes_name_the_key_that_made_them(
    app: Flask, totp_user: tuple[User, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    user, _ = totp_user
    codes = _codes_of(user)
    assert len(codes) == 10
    assert {c.key_id for c in codes} == {key_id(app.config["SECRET_KEY"])}
    assert recovery_keys.status(user.id) == recovery_keys.CodeStatus(10, "current")
    _rotate(app, monkeypatch)
    assert recovery_keys.status(user.id).key == "fallback"
    twofactor.regenerate(user)
    assert {c.key_id for c in _codes_of(user)} == {key_id(NEW_KEY)}
    assert recovery_keys.status(user.id).key == "current"


@pytest.mark.asvs("V11.2.2", "V6.5.2", "V16.2.1")
def test_reseal_says_which_fallback_recovery_codes_still_need(
    app: Flask, runner: FlaskCliRunner, totp_user: tuple[User, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    user, _ = totp_user
    enable_2fa(UserFactory(username="rhea", email="rhea@example.org"))
    _rotate(app, monkeypatch)
    out = _reseal(runner)
    assert ("2 account(s) hold recovery codes made under fallback key 1 of "
            "BASTION_SECRET_KEY_FALLBACKS") in out
    assert "No recovery code needs" not in out
    (event,) = db.session.scalars(
        select(AuditEvent).where(AuditEvent.event == "cli.totp_secrets_resealed"))
    assert event.details["recovery_codes_under_fallbacks"] == 2

    twofactor.regenerate(user)
    out = _reseal(runner)
    assert "1 account(s) hold recovery codes made under fallback key 1" in out
    twofactor.regenerate(db.session.scalar(select(User).where(User.username == "rhea")))
    out = _reseal(runner, exit_code=0)  # a script may now drop the fallback
    assert "No recovery code needs BASTION_SECRET_KEY_FALLBACKS any more" in out
    assert "hold recovery codes" not in out


@pytest.mark.asvs("V6.5.2", "V11.2.2")
def test_a_set_made_before_keys_were_named_is_named_by_the_code_that_matches(
    app: Flask, runner: FlaskCliRunner, client: FlaskClient, totp_user: tuple[User, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Codes from before migration 0012 have no key name; the first one used tells it,
    for the whole set (its ten codes were made together)."""
    user, _ = totp_user
    db.session.execute(
        update(RecoveryCode).where(RecoveryCode.user_id == user.id).values(key_id=None))
    db.session.commit()
    old = _rotate(app, monkeypatch)
    assert recovery_keys.status(user.id).key == "unrecorded"
    assert "1 account(s) hold recovery codes made before Bastion recorded their key" in (
        _reseal(runner))

    sign_in(client, "tess")
    assert _code_step(client, user._test_recovery_codes[3]).status_code == 302
    assert {c.key_id for c in _codes_of(user)} == {key_id(old)}
    assert recovery_keys.status(user.id) == recovery_keys.CodeStatus(9, "fallback")
    assert recovery_keys.report().by_fallback == {1: 1}


@pytest.mark.asvs("V6.5.2", "V11.2.2")
def test_the_account_page_asks_for_new_codes_once_their_key_is_a_fallback_or_gone(
    app: Flask, client: FlaskClient, runner: FlaskCliRunner, totp_user: tuple[User, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    user, secret = totp_user
    user.totp_last_step = None
    db.session.commit()
    assert _signs_in_with_totp(client, user, secret)
    assert b"recovery codes were made" not in client.get("/account").data

    _rotate(app, monkeypatch)
    page = client.get("/account").data
    assert b"will stop working when the old key is retired: make new ones" in page

    _reseal(runner)  # the TOTP secret moves to the new key; the codes cannot
    monkeypatch.setitem(app.config, "SECRET_KEY_FALLBACKS", [])
    fresh = app.test_client()
    assert _signs_in_with_totp(fresh, user, secret)
    assert b"so they no longer work: make new ones" in fresh.get("/account").data
    assert recovery_keys.report().retired == 1
    # No fallback left to keep: the run succeeds and says whose codes stopped working.
    assert "1 account(s) hold recovery codes made under a key that is no longer configured" in (
        _reseal(runner, exit_code=0))

    twofactor.regenerate(user)
    page = fresh.get("/account").data
    assert b"recovery codes were made" not in page and b"10 of 10 recovery codes left" in page
