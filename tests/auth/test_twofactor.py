"""TOTP second factor: two-step login, replay, recovery codes, enrolment, mandatory roles."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pyotp
import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, update

from bastion.extensions import db
from bastion.models import AuditEvent, RecoveryCode, User, UserSession, utcnow
from tests.factories import PASSWORD, UserFactory
from tests.support.account_fixtures import enable_2fa, is_signed_in, sign_in
from tests.support.accounts import post_form, shown_totp_secret, unused_code
from tests.support.auth import FOREIGN_NEXT, csrf_token

COOKIE = "__Host-session"


def _code_step(client: FlaskClient, code: str) -> Any:
    return post_form(client, "/auth/2fa", {"code": code})


def _reset_step(user: User) -> None:
    """Pretend the clock moved on, so a new code exists for the next step."""
    user.totp_last_step = None
    db.session.commit()


@pytest.mark.asvs("V6.3.3")
def test_login_is_two_steps_and_not_signed_in_between(
    client: FlaskClient, totp_user: tuple[User, str]
) -> None:
    user, secret = totp_user
    resp = sign_in(client, "tess")
    assert resp.headers["Location"] == "/auth/2fa"
    assert db.session.scalar(select(UserSession)) is None  # no session record yet
    # Skipping the second step by browsing straight to a page does not work.
    assert client.get("/account").status_code == 302
    assert not is_signed_in(client)
    pending_cookie = client.get_cookie(COOKIE, domain="localhost").value
    _reset_step(user)
    done = _code_step(client, unused_code(secret, None))
    assert done.status_code == 302
    assert is_signed_in(client)
    assert client.get_cookie(COOKIE, domain="localhost").value != pending_cookie
    attacker = client.application.test_client()
    attacker.set_cookie(COOKIE, pending_cookie, domain="localhost")
    assert not is_signed_in(attacker)


@pytest.mark.asvs("V6.5.1")
def test_a_used_totp_code_cannot_be_replayed(client: FlaskClient, totp_user: tuple[User, str]) -> None:
    user, secret = totp_user
    _reset_step(user)
    code = unused_code(secret, None)
    sign_in(client, "tess")
    assert _code_step(client, code).status_code == 302
    client.post("/auth/logout", data={"csrf_token": _csrf(client)})
    sign_in(client, "tess")
    again = _code_step(client, code)
    assert again.status_code == 200 and b"already used" in again.data
    assert f'value="{code}"'.encode() not in again.data  # the field is empty for the next
    assert not is_signed_in(client)


@pytest.mark.asvs("V6.5.5")
def test_a_totp_code_lives_one_30_second_step_and_one_step_of_drift(
    client: FlaskClient, totp_user: tuple[User, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A code read off a phone a minute ago (or one a minute ahead) is refused: only the
    current 30-second step and one step either side, for clock drift, are accepted."""
    from bastion.auth import twofactor

    user, secret = totp_user
    totp = pyotp.TOTP(secret)
    assert totp.interval == 30
    # Mid-step, on a clock that stands still, so no step boundary is crossed meanwhile.
    now = utcnow().replace(microsecond=0)
    now -= timedelta(seconds=now.timestamp() % 30 - 15)
    monkeypatch.setattr(twofactor, "utcnow", lambda: now)
    sign_in(client, "tess")
    for stale in (now - timedelta(seconds=60), now + timedelta(seconds=60),
                  now - timedelta(minutes=10)):
        _reset_step(user)
        refused = _code_step(client, totp.at(stale))
        assert refused.status_code == 200, stale
        assert not is_signed_in(client)
    _reset_step(user)
    assert _code_step(client, totp.at(now)).status_code == 302
    assert is_signed_in(client)


def _csrf(client: FlaskClient) -> str:
    from tests.support.auth import csrf_token

    return csrf_token(client, "/account")


@pytest.mark.asvs("V6.5.1", "V6.5.2", "V6.5.4")
def test_recovery_codes_work_once_and_are_stored_hashed(
    client: FlaskClient, totp_user: tuple[User, str]
) -> None:
    user, _ = totp_user
    codes: list[str] = user._test_recovery_codes
    assert len(codes) == 10 and len(set(codes)) == 10
    stored = set(db.session.scalars(select(RecoveryCode.code_hash)))
    assert len(stored) == 10 and not any(c in h for c in codes for h in stored)
    sign_in(client, "tess")
    assert _code_step(client, codes[0].upper()).status_code == 302
    assert is_signed_in(client)
    client.post("/auth/logout", data={"csrf_token": _csrf(client)})
    sign_in(client, "tess")
    assert _code_step(client, codes[0]).status_code == 200
    assert not is_signed_in(client)


def test_pending_second_step_expires(
    app: Flask, client: FlaskClient, totp_user: tuple[User, str], monkeypatch: Any
) -> None:
    user, secret = totp_user
    monkeypatch.setitem(app.config, "TWO_FACTOR_PENDING_SECONDS", -1)
    sign_in(client, "tess")
    resp = client.get("/auth/2fa")
    assert resp.status_code == 302 and resp.headers["Location"] == "/auth/login"
    monkeypatch.setitem(app.config, "TWO_FACTOR_PENDING_SECONDS", 300)
    _reset_step(user)
    resp = client.post("/auth/2fa", data={"code": unused_code(secret, None)})
    assert resp.status_code in (302, 400)
    assert not is_signed_in(client)


def _audited(event: str) -> int:
    return int(db.session.scalar(
        select(func.count()).select_from(AuditEvent).where(AuditEvent.event == event)
    ) or 0)


def _pending_copy(client: FlaskClient) -> tuple[str, str]:
    """What a copy taken between the password and the code holds: the session cookie and
    the code form's CSRF token (which that cookie carries the secret of)."""
    token = csrf_token(client, "/auth/2fa")
    return client.get_cookie(COOKIE, domain="localhost").value, token


def _replay(app: Flask, copy: tuple[str, str], code: str) -> tuple[Any, FlaskClient]:
    cookie, token = copy
    attacker = app.test_client()
    attacker.set_cookie(COOKIE, cookie, domain="localhost")
    return attacker.post("/auth/2fa", data={"csrf_token": token, "code": code}), attacker


@pytest.mark.asvs("V6.3.3", "V7.2.4")
@pytest.mark.parametrize("factor", ["totp", "recovery code"])
def test_a_copied_pending_cookie_finishes_no_second_sign_in(
    app: Flask, client: FlaskClient, totp_user: tuple[User, str], factor: str
) -> None:
    """A copy of the cookie taken before the code was typed (a shared computer, a proxy's
    log), replayed once the owner is in, with the next code read off the owner's screen or
    another recovery code: the marker finished its one sign-in, so the password is asked."""
    user, secret = totp_user
    _reset_step(user)
    sign_in(client, "tess")
    copy = _pending_copy(client)
    assert _code_step(client, unused_code(secret, None)).status_code == 302
    assert is_signed_in(client)
    _reset_step(user)  # the next 30-second step: a code the owner has not used
    fresh = unused_code(secret, None) if factor == "totp" else user._test_recovery_codes[0]

    refused, attacker = _replay(app, copy, fresh)

    assert refused.status_code == 302 and refused.headers["Location"] == "/auth/login"
    assert not is_signed_in(attacker)
    assert attacker.get("/account").headers["Location"].startswith("/auth/login")
    assert db.session.scalar(select(func.count()).select_from(UserSession)) == 1
    assert _audited("login.success") == 1 and _audited("login.pending_reused") == 1
    # Refused before the code was looked at: it is still the owner's to use.
    reauth = post_form(client, "/auth/reauth", {"password": PASSWORD, "code": fresh})
    assert reauth.status_code == 302
    # And the marker is gone from the copy's jar: a second try is asked for the password.
    assert attacker.get("/auth/2fa").headers["Location"] == "/auth/login"


@pytest.mark.asvs("V6.3.3")
def test_wrong_codes_can_be_retried_on_one_marker_which_then_ends(
    client: FlaskClient, totp_user: tuple[User, str]
) -> None:
    """Single use means one finished sign-in, not one try: a mistyped code is retried on
    the same marker (counted by the throttle as before). A second tab still showing the
    form, sent once the sign-in is done, signs in no one again: it is sent on to the home
    page and leaves the sign-in alone (test_pending_replay); two tabs sending at once are
    in test_single_use_races."""
    user, secret = totp_user
    _reset_step(user)
    sign_in(client, "tess")
    other_tab = csrf_token(client, "/auth/2fa")
    for wrong in ("000000", "12345", "not a code"):
        again = _code_step(client, wrong)
        assert again.status_code == 200 and b"not right" in again.data
    assert _audited("login.2fa_failure") == 3
    assert _code_step(client, unused_code(secret, None)).status_code == 302
    _reset_step(user)
    late = client.post("/auth/2fa", data={"csrf_token": other_tab,
                                          "code": unused_code(secret, None)})
    assert late.status_code == 302 and late.headers["Location"] == "/"
    assert is_signed_in(client)
    assert db.session.scalar(select(func.count()).select_from(UserSession)) == 1


@pytest.mark.asvs("V6.3.3", "V16.3.1")
def test_a_marker_from_before_markers_had_a_nonce_asks_for_the_password_without_an_alarm(
    client: FlaskClient, totp_user: tuple[User, str]
) -> None:
    """Someone between the password and the code while the release that added the nonce
    went out: the password is asked again, but nothing was replayed, so the audit trail
    records no reused marker (an admin reading it would look for a stolen cookie)."""
    user, secret = totp_user
    _reset_step(user)
    sign_in(client, "tess")
    token = csrf_token(client, "/auth/2fa")
    with client.session_transaction() as session:
        session["pending_2fa"] = {k: v for k, v in session["pending_2fa"].items()
                                  if k != "nonce"}

    resp = client.post("/auth/2fa", data={"csrf_token": token,
                                          "code": unused_code(secret, None)})

    assert resp.status_code == 302 and resp.headers["Location"] == "/auth/login"
    assert not is_signed_in(client)
    assert _audited("login.pending_reused") == 0 and _audited("login.success") == 0


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.asvs("V6.3.3", "V7.2.4")
def test_a_marker_spent_on_one_instance_is_spent_on_every_other(
    make_app: Any, redis_url: str
) -> None:
    """As deployed: several instances behind one address, sharing PostgreSQL and Redis. The
    copy is replayed to another instance than the one that finished the sign-in."""
    import os

    prefix = os.environ["BASTION_TEST_REDIS_PREFIX"]
    shared = {"REDIS_URL": redis_url, "REDIS_PREFIX": prefix, "RATELIMIT_KEY_PREFIX": prefix}
    one = make_app(backend="postgres", **shared)
    other = make_app(DATABASE_URL=one.config["DATABASE_URL"], **shared)
    with one.app_context():
        user = UserFactory(username="tess", email="tess@example.org")
        secret = enable_2fa(user)
        _reset_step(user)
        owner = one.test_client()
        sign_in(owner, "tess")
        copy = _pending_copy(owner)
        assert _code_step(owner, unused_code(secret, None)).status_code == 302
        _reset_step(user)
        fresh = unused_code(secret, None)
        db.session.remove()
    with other.app_context():
        refused, attacker = _replay(other, copy, fresh)
        assert refused.status_code == 302 and refused.headers["Location"] == "/auth/login"
        assert not is_signed_in(attacker)
        assert db.session.scalar(select(func.count()).select_from(UserSession)) == 1
        keys = redis.Redis.from_url(redis_url).keys(f"{prefix}:2fa-pending:*")
        assert len(keys) == 1 and 0 < redis.Redis.from_url(redis_url).ttl(keys[0]) <= 360
        db.session.remove()


@pytest.mark.redis
@pytest.mark.asvs("V6.3.3", "V16.5.3")
def test_a_marker_that_cannot_be_spent_starts_no_session(
    make_app: Any, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fail closed: Redis goes away just as the right code is checked, so the marker cannot
    be recorded as spent. No session starts (the reply is the credential routes' 503); once
    Redis is back, the same marker finishes with the next code."""
    import os

    from bastion.auth import twofactor
    from tests.ops.processes import TcpForwarder

    target = urlsplit(redis_url)
    forwarder = TcpForwarder((target.hostname or "127.0.0.1", target.port or 6379)).start()
    prefix = os.environ["BASTION_TEST_REDIS_PREFIX"]
    app = make_app(REDIS_URL=f"redis://127.0.0.1:{forwarder.port}{target.path}",
                   REDIS_PREFIX=prefix, RATELIMIT_KEY_PREFIX=prefix)
    real = twofactor.verify_totp_or_recovery

    def then_redis_goes(user: User, code: str) -> bool:
        right = real(user, code)
        forwarder.stop()
        return right

    try:
        with app.app_context():
            user = UserFactory(username="tess", email="tess@example.org")
            secret = enable_2fa(user)
            _reset_step(user)
            browser = app.test_client()
            sign_in(browser, "tess")
            token = csrf_token(browser, "/auth/2fa")
            monkeypatch.setattr(twofactor, "verify_totp_or_recovery", then_redis_goes)
            down = browser.post("/auth/2fa", data={"csrf_token": token,
                                                   "code": unused_code(secret, None)})
            assert down.status_code == 503 and down.headers["Retry-After"] == "30"
            assert b"Signing in is paused" in down.data
            assert browser.get("/auth/2fa").status_code == 503  # not a 500, not the form
            assert db.session.scalar(select(func.count()).select_from(UserSession)) == 0
            assert _audited("login.success") == 0

            monkeypatch.setattr(twofactor, "verify_totp_or_recovery", real)
            forwarder.start()
            _reset_step(user)  # the next 30-second step
            back = browser.post("/auth/2fa", data={"csrf_token": token,
                                                   "code": unused_code(secret, None)})
            assert back.status_code == 302 and back.headers["Location"] == "/"
            assert is_signed_in(browser)
            db.session.remove()
    finally:
        forwarder.stop()


@pytest.mark.asvs("V6.3.3", "V6.5.1")
def test_enrolment_needs_a_correct_code_and_encrypts_the_secret(
    client: FlaskClient, user: User
) -> None:
    sign_in(client, "alice")
    page = client.get("/account/2fa")
    assert page.status_code == 200 and b"<svg" in page.data and b"data:" not in page.data
    secret = shown_totp_secret(page.get_data(as_text=True))
    assert secret
    bad = post_form(client, "/account/2fa", {"code": "000000"})
    assert bad.status_code == 422
    db.session.refresh(user)
    assert not user.has_2fa and secret not in (user.totp_secret or "")
    ok = post_form(client, "/account/2fa", {"code": pyotp.TOTP(secret).now()})
    assert ok.status_code == 200 and ok.data.count(b"<li><code>") == 10
    assert ok.headers["Cache-Control"] == "no-store"
    db.session.refresh(user)
    assert user.has_2fa


def _shown_secret(client: FlaskClient) -> str:
    page = client.get("/account/2fa").get_data(as_text=True)
    found = shown_totp_secret(page)
    assert found, "no secret on the enrolment page"
    return found


@pytest.mark.asvs("V6.3.3")
def test_a_secret_shown_to_another_session_is_never_enrolled(app: Flask, user: User) -> None:
    """Enrolment hijack: the pending secret lived on the account, so whoever once held a
    session (a borrowed browser, a stolen cookie) could open the setup page, note the
    secret, and later watch the owner enrol that very secret from their own session."""
    attacker = app.test_client()
    sign_in(attacker, "alice")
    planted = _shown_secret(attacker)
    owner = app.test_client()
    sign_in(owner, "alice")
    seen = _shown_secret(owner)
    assert seen != planted
    # A code from the planted secret is refused, from the owner's session and the attacker's.
    assert post_form(owner, "/account/2fa", {"code": pyotp.TOTP(planted).now()}).status_code == 422
    assert post_form(attacker, "/account/2fa", {"code": pyotp.TOTP(seen).now()}).status_code == 422
    db.session.refresh(user)
    assert not user.has_2fa
    seen = _shown_secret(owner)  # the attacker's page view replaced it again
    _reset_step(user)
    assert post_form(owner, "/account/2fa", {"code": pyotp.TOTP(seen).now()}).status_code == 200
    db.session.refresh(user)
    assert user.has_2fa


@pytest.mark.asvs("V7.5.1", "V6.3.3")
def test_disabling_2fa_requires_recent_password_and_code(
    client: FlaskClient, totp_user: tuple[User, str]
) -> None:
    user, secret = totp_user
    sign_in(client, "tess")
    _reset_step(user)
    _code_step(client, unused_code(secret, None))
    record = db.session.scalar(select(UserSession))
    record.reauth_at = utcnow() - timedelta(minutes=11)
    db.session.commit()
    resp = post_form(client, "/account", {}, action="/account/2fa/disable")
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/auth/reauth")
    db.session.refresh(user)
    assert user.has_2fa
    # Password alone is not enough when 2FA is on.
    assert post_form(client, "/auth/reauth", {"password": PASSWORD}).status_code == 200
    _reset_step(user)
    resp = post_form(client, "/auth/reauth", {"password": PASSWORD,
                                               "code": unused_code(secret, None),
                                               "next": "/account"})
    assert resp.headers["Location"] == "/account"
    _reset_step(user)
    post_form(client, "/account", {"code": unused_code(secret, None)},
              action="/account/2fa/disable")
    db.session.refresh(user)
    assert not user.has_2fa
    assert db.session.scalar(select(RecoveryCode)) is None


def test_regenerated_codes_replace_the_old_ones(client: FlaskClient, totp_user: tuple[User, str]) -> None:
    user, _secret = totp_user
    old = user._test_recovery_codes
    sign_in(client, "tess")
    _code_step(client, old[0])
    resp = post_form(client, "/account", {"code": old[1]}, action="/account/2fa/recovery-codes")
    assert resp.status_code == 200 and resp.data.count(b"<li><code>") == 10
    from bastion.auth.twofactor import use_recovery_code

    assert not use_recovery_code(user, old[2])


@pytest.mark.asvs("V7.5.1", "V6.3.3")
@pytest.mark.parametrize("action", ["/account/2fa/disable", "/account/2fa/recovery-codes"])
def test_a_fresh_session_alone_cannot_turn_2fa_off_or_take_new_codes(
    app: Flask, client: FlaskClient, totp_user: tuple[User, str], action: str, monkeypatch: Any
) -> None:
    """A copied cookie of a session that re-authenticated minutes ago is still not the
    second factor: without a code (or with a wrong, replayed or foreign one) nothing
    changes, the owner's recovery codes keep working, and the wrong codes are throttled."""
    user, secret = totp_user
    sign_in(client, "tess")
    _reset_step(user)
    used = unused_code(secret, None)
    _code_step(client, used)
    codes = db.session.scalars(select(RecoveryCode.code_hash)).all()
    monkeypatch.setitem(app.config, "LOGIN_THROTTLE_ACCOUNT_FREE", 4)
    monkeypatch.setitem(app.config, "LOGIN_THROTTLE_BASE_SECONDS", 30.0)
    foreign = pyotp.TOTP(pyotp.random_base32()).now()
    for code in ("", used, foreign, "123456", "aaaa-bbbb-cccc-dddd-eeee-ffff"):
        resp = post_form(client, "/account", {"code": code}, action=action)
        assert resp.status_code == 422, code
        assert b'aria-invalid="true"' in resp.data
    db.session.refresh(user)
    assert user.has_2fa and db.session.scalars(select(RecoveryCode.code_hash)).all() == codes
    # Wrong codes count against the sign-in throttle: the next tries must wait.
    resp = post_form(client, "/account", {"code": "654321"}, action=action)
    assert resp.status_code == 429 and int(resp.headers["Retry-After"]) >= 1
    assert b"Too many wrong codes" in resp.data
    assert db.session.scalar(
        select(func.count()).select_from(AuditEvent).where(AuditEvent.event == "2fa.change_failure")
    ) >= 3


@pytest.mark.asvs("V7.5.1")
def test_setting_up_2fa_or_new_recovery_codes_needs_a_recent_reauthentication(
    client: FlaskClient, user: User, totp_user: tuple[User, str]
) -> None:
    """Whoever holds a stale session must not enrol a device of their own (locking the
    owner out) nor take a fresh set of recovery codes, even with a right code."""
    stale = utcnow() - timedelta(minutes=11)
    sign_in(client, "alice")
    db.session.execute(update(UserSession).values(reauth_at=stale))
    db.session.commit()
    assert client.get("/account/2fa").headers["Location"].startswith("/auth/reauth")
    resp = post_form(client, "/account", {"code": "123456"}, action="/account/2fa")
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/auth/reauth")
    db.session.refresh(user)
    assert user.totp_secret is None and not user.has_2fa  # no secret was even drawn

    tess, secret = totp_user
    phone = client.application.test_client()
    sign_in(phone, "tess")
    _reset_step(tess)
    assert _code_step(phone, unused_code(secret, None)).status_code == 302
    db.session.execute(update(UserSession).where(UserSession.user_id == tess.id)
                       .values(reauth_at=stale))
    db.session.commit()
    codes = set(db.session.scalars(select(RecoveryCode.code_hash)
                                   .where(RecoveryCode.user_id == tess.id)))
    _reset_step(tess)
    resp = post_form(phone, "/account", {"code": unused_code(secret, None)},
                     action="/account/2fa/recovery-codes")
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/auth/reauth")
    assert set(db.session.scalars(select(RecoveryCode.code_hash)
                                  .where(RecoveryCode.user_id == tess.id))) == codes


@pytest.mark.asvs("V7.5.1", "V6.4.4")
def test_a_recovery_code_turns_2fa_off_once(
    client: FlaskClient, totp_user: tuple[User, str]
) -> None:
    """The owner who lost the device turns 2FA off with a recovery code; the code is spent."""
    user, _secret = totp_user
    codes = user._test_recovery_codes
    sign_in(client, "tess")
    _code_step(client, codes[0])
    resp = post_form(client, "/account", {"code": codes[1].upper()}, action="/account/2fa/disable")
    assert resp.status_code == 302
    db.session.refresh(user)
    assert not user.has_2fa


@pytest.mark.asvs("V6.3.3")
def test_roles_that_require_2fa_are_sent_to_enrolment_first(client: FlaskClient) -> None:
    UserFactory(username="boss", email="boss@example.org", role_name="admin", two_factor=False)
    sign_in(client, "boss")
    resp = client.get("/account")
    assert resp.status_code == 302 and resp.headers["Location"] == "/account/2fa?next=/account"
    assert client.get("/account/2fa").status_code == 200


@pytest.mark.asvs("V6.3.3")
def test_signing_in_without_the_required_factor_leads_straight_to_enrolment(
    client: FlaskClient,
) -> None:
    """Not only once a page that needs it is opened: the home page, where sign-in used to
    lead, is public, so a new admin saw no sign of the step until they tried to work."""
    UserFactory(username="boss", email="boss@example.org", role_name="admin", two_factor=False)
    resp = sign_in(client, "boss")
    assert resp.status_code == 302 and resp.headers["Location"] == "/account/2fa"
    page = client.get("/account/2fa").get_data(as_text=True)
    assert page.count("Your role requires two-factor authentication") == 1


def test_enrolled_admin_is_let_through(client: FlaskClient) -> None:
    boss = UserFactory(username="boss", email="boss@example.org", role_name="admin", two_factor=False)
    secret = enable_2fa(boss)
    sign_in(client, "boss")
    _reset_step(boss)
    _code_step(client, unused_code(secret, None))
    assert client.get("/account").status_code == 200


def _hidden_next(page: str) -> str | None:
    """The ``next`` the enrolment form carries (Flask-WTF's hidden_tag), or None."""
    import html
    import re

    found = re.search(r'<input id="next" name="next" type="hidden" value="([^"]*)"', page)
    return html.unescape(found.group(1)) if found and found.group(1) else None


def _enrol_from(client: FlaskClient, setup: str) -> Any:
    """Open the enrolment page at ``setup`` and turn 2FA on with what its form carries."""
    page = client.get(setup).get_data(as_text=True)
    secret = shown_totp_secret(page)
    assert secret
    data = {"code": pyotp.TOTP(secret).now()}
    if (nxt := _hidden_next(page)) is not None:
        data["next"] = nxt
    return post_form(client, setup, data)


def test_enrolment_at_sign_in_leads_on_to_the_page_asked_for(client: FlaskClient) -> None:
    """Signing in from a link to an admin page, an admin who must enrol used to land on the
    account page after the recovery codes, the page asked for forgotten."""
    UserFactory(username="boss", email="boss@example.org", role_name="admin", two_factor=False)
    resp = sign_in(client, "boss", next="/admin/users?page=2")
    setup = resp.headers["Location"]
    assert urlsplit(setup).path == "/account/2fa"
    assert parse_qs(urlsplit(setup).query) == {"next": ["/admin/users?page=2"]}
    done = _enrol_from(client, setup)
    assert done.status_code == 200 and done.data.count(b"<li><code>") == 10
    assert 'href="/admin/users?page=2">I have saved them' in done.get_data(as_text=True)
    assert client.get("/admin/users?page=2").status_code == 200


def test_a_page_held_back_for_enrolment_is_offered_once_enrolled(client: FlaskClient) -> None:
    """The access check that holds a signed-in admin at enrolment keeps the page wanted."""
    UserFactory(username="boss", email="boss@example.org", role_name="admin", two_factor=False)
    assert sign_in(client, "boss").headers["Location"] == "/account/2fa"
    setup = client.get("/admin/users").headers["Location"]
    assert setup == "/account/2fa?next=/admin/users"
    # A POST cannot be replayed after enrolment: it names no page.
    held = post_form(client, "/account/2fa", {}, action="/account/sessions/revoke-all")
    assert held.status_code == 302 and held.headers["Location"] == "/account/2fa"
    done = _enrol_from(client, setup)
    assert 'href="/admin/users">I have saved them' in done.get_data(as_text=True)


@pytest.mark.asvs("V3.7.2")
@pytest.mark.parametrize("hostile", FOREIGN_NEXT)
def test_enrolment_never_offers_a_foreign_page(client: FlaskClient, hostile: str) -> None:
    """Neither the sign-in form, the enrolment link nor the enrolment form can make the page
    after the recovery codes lead off the site: each checks the target itself."""
    UserFactory(username="boss", email="boss@example.org", role_name="admin", two_factor=False)
    assert sign_in(client, "boss", next=hostile).headers["Location"] == "/account/2fa"
    page = client.get("/account/2fa?" + urlencode({"next": hostile})).get_data(as_text=True)
    assert _hidden_next(page) is None and "evil.example" not in page
    secret = shown_totp_secret(page)
    assert secret
    done = post_form(client, "/account/2fa", {"code": pyotp.TOTP(secret).now(), "next": hostile})
    assert done.status_code == 200
    text = done.get_data(as_text=True)
    assert 'href="/account">I have saved them</a>' in text and "evil.example" not in text


@pytest.mark.asvs("V2.2.1", "V6.3.3")
# Arabic-Indic, superscript and full-width digits, written as escapes.
@pytest.mark.parametrize("code", [
    "\u0661\u0662\u0663\u0664\u0665\u0666",
    "\u00b9\u00b2\u00b3\u2074\u2075\u2076",
    "\uff11\uff12\uff13\uff14\uff15\uff16",
])
def test_digits_from_other_scripts_are_a_wrong_code_not_an_error(
    client: FlaskClient, totp_user: tuple[User, str], code: str
) -> None:
    """str.isdigit() says yes to these; comparing them with a real code raised a 500."""
    sign_in(client, "tess")
    resp = _code_step(client, code)
    assert resp.status_code == 200 and not is_signed_in(client)
    api = client.post(
        "/api/v1/auth/token", json={"username": "tess", "password": PASSWORD, "otp": code}
    )
    assert api.status_code == 401, api.get_json()


@pytest.mark.asvs("V6.5.1", "V6.3.4")
@pytest.mark.parametrize("factor", ["totp", "recovery code"])
def test_one_code_is_spent_everywhere_at_once(
    app: Flask, client: FlaskClient, totp_user: tuple[User, str], factor: str
) -> None:
    """A code read over the owner's shoulder as it was typed at sign-in is worth nothing
    at the other places that take one: re-authentication (which renews the window for
    sensitive changes) and the API token endpoint (a sign-in of its own)."""
    user, secret = totp_user
    _reset_step(user)
    code = unused_code(secret, None) if factor == "totp" else user._test_recovery_codes[0]
    sign_in(client, "tess")
    assert _code_step(client, code).status_code == 302 and is_signed_in(client)
    reauth = post_form(client, "/auth/reauth", {"password": PASSWORD, "code": code})
    assert reauth.status_code == 200 and b"did not match" in reauth.data
    api = app.test_client().post(
        "/api/v1/auth/token", json={"username": "tess", "password": PASSWORD, "otp": code}
    )
    assert api.status_code == 401 and "refresh_token" not in (api.get_json() or {})
    assert db.session.scalar(
        select(func.count()).select_from(AuditEvent).where(AuditEvent.event == "login.success")
    ) == 1


@pytest.mark.asvs("V7.4.3")
def test_each_change_of_factor_offers_to_end_every_other_sign_in(
    app: Flask, client: FlaskClient, user: User
) -> None:
    """Sign-ins made with the password alone live on after 2FA is turned on, and ones made
    with a lost device after it is turned off or its codes replaced: each change offers
    to end them, and the offer ends the other browser's session too."""
    other = app.test_client()
    sign_in(other, "alice")
    sign_in(client, "alice")
    secret = shown_totp_secret(client.get("/account/2fa").get_data(as_text=True))
    assert secret
    enabled = post_form(client, "/account/2fa", {"code": pyotp.TOTP(secret).now()})
    assert enabled.status_code == 200
    offer = 'action="/account/sessions/revoke-all"'
    assert offer in enabled.get_data(as_text=True)
    db.session.expire_all()
    regenerated = post_form(client, "/account/2fa/recovery-codes",
                            {"code": unused_code(secret, user.totp_last_step)})
    assert regenerated.status_code == 200 and offer in regenerated.get_data(as_text=True)
    recovery = regenerated.get_data(as_text=True).split("<li><code>")[1].split("<")[0]
    off = post_form(client, "/account/2fa/disable", {"code": recovery})
    assert off.status_code == 302
    page = client.get("/account").get_data(as_text=True)
    assert "Two-factor authentication is off" in page and "Sign out everywhere" in page
    assert offer in page
    assert is_signed_in(other)
    assert post_form(client, "/account/sessions/revoke-all", {}).status_code == 302
    assert not is_signed_in(other) and not is_signed_in(client)


@pytest.mark.asvs("V6.3.3", "V7.2.4")
def test_enrolling_in_a_role_that_requires_it_signs_out_the_sessions_made_without_it(
    app: Flask, client: FlaskClient
) -> None:
    """An admin not yet enrolled is held at enrolment in every browser. A session left
    waiting there by whoever knew the password must not open the admin pages once the owner
    turns 2FA on elsewhere: it was signed in with the password alone."""
    from tests.support.accounts import shown_totp_secret

    boss = UserFactory(username="boss", email="boss@example.org", role_name="admin",
                       two_factor=False)
    waiting = app.test_client()
    sign_in(waiting, "boss")
    assert waiting.get("/admin/users").headers["Location"] == "/account/2fa?next=/admin/users"
    sign_in(client, "boss")
    secret = shown_totp_secret(client.get("/account/2fa").get_data(as_text=True))
    assert secret is not None
    done = post_form(client, "/account/2fa", {"code": pyotp.TOTP(secret).now()})
    assert done.status_code == 200
    assert "password alone was signed out" in done.get_data(as_text=True)
    db.session.refresh(boss)
    assert boss.has_2fa
    assert client.get("/admin/users").status_code == 200  # the enrolling browser stays
    assert not is_signed_in(waiting)
    assert waiting.get("/admin/users").status_code == 302
    enabled = db.session.scalars(
        select(AuditEvent).where(AuditEvent.event == "2fa.enabled")
    ).one()
    assert enabled.details == {"sessions_ended": 1}


def test_enrolling_where_no_role_requires_it_leaves_other_sessions_to_the_owner(
    app: Flask, client: FlaskClient
) -> None:
    """A viewer's other sessions were never held back; the page offers to end them."""
    from tests.support.accounts import shown_totp_secret

    UserFactory(username="vera", email="vera@example.org", role_name="viewer", two_factor=False)
    other = app.test_client()
    sign_in(other, "vera")
    sign_in(client, "vera")
    secret = shown_totp_secret(client.get("/account/2fa").get_data(as_text=True))
    assert secret is not None
    done = post_form(client, "/account/2fa", {"code": pyotp.TOTP(secret).now()})
    assert done.status_code == 200 and "Sign out everywhere" in done.get_data(as_text=True)
    assert is_signed_in(other)
