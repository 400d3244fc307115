"""Sign-in: generic failures, no enumeration, hash upgrades, sessions that cannot be reused."""

from __future__ import annotations

import logging
import re
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import bcrypt
import pytest
from argon2 import PasswordHasher
from flask.testing import FlaskClient
from sqlalchemy import select

from bastion.extensions import db
from bastion.models import AuditEvent, User, UserSession, utcnow
from bastion.observability.logging import JSONFormatter
from tests.factories import PASSWORD, UserFactory
from tests.support.account_fixtures import is_signed_in, sign_in
from tests.support.accounts import full_width
from tests.support.auth import csrf_token

COOKIE = "__Host-session"
GENERIC = b"That username or password is not right"


def _cookie(client: FlaskClient) -> str:
    cookie = client.get_cookie(COOKIE, domain="localhost")
    assert cookie is not None
    return cookie.value


def _events(name: str) -> list[AuditEvent]:
    return list(db.session.scalars(select(AuditEvent).where(AuditEvent.event == name)))


@pytest.mark.asvs("V6.3.1")
def test_failures_look_the_same_for_every_reason(client: FlaskClient, user: User) -> None:
    UserFactory(username="pending", email="pending@example.org", email_confirmed_at=None)
    UserFactory(username="gone", email="gone@example.org", disabled_at=utcnow())
    tried = {
        "nobody-here": PASSWORD,  # unknown user
        "alice": PASSWORD + "x",  # wrong password
        "pending": PASSWORD,  # unconfirmed
        "gone": PASSWORD,  # disabled
    }
    answers = [sign_in(client, name, password) for name, password in tried.items()]
    assert {r.status_code for r in answers} == {200}
    assert all(GENERIC in r.data for r in answers)
    # One page for every reason: it differs only by the name typed back into its field,
    # the CSRF token's timestamp and the script's CSP nonce.
    bodies = {
        re.sub(r'( nonce=)"[^"]*"', r"\1",
               re.sub(r'(name="csrf_token" type="hidden" value=)"[^"]*"', r"\1",
                      r.get_data(as_text=True).replace(f'value="{name}"', 'value=""')))
        for name, r in zip(tried, answers, strict=True)
    }
    assert len(bodies) == 1
    assert not is_signed_in(client)
    failures = _events("login.failure")
    assert len(failures) == 4 and all(e.ip == "127.0.0.1" for e in failures)


@pytest.mark.asvs("V16.2.5", "V14.2.4")
def test_text_naming_no_account_is_not_kept_in_the_trail_or_the_log(
    client: FlaskClient, user: User, caplog: pytest.LogCaptureFixture
) -> None:
    # People type their password into the username box; the trail must not keep it.
    typed = "Tr0ub4dor&3-horse-staple"
    caplog.set_level(logging.INFO, logger="bastion")
    sign_in(client, typed, PASSWORD)
    sign_in(client, typed, PASSWORD)
    sign_in(client, "alice", PASSWORD + "x")

    unknown_a, unknown_b, known = _events("login.failure")
    assert typed.lower() not in str(unknown_a.details).lower()
    logged = "\n".join(JSONFormatter().format(record) for record in caplog.records)
    assert "login.failure" in logged and typed.lower() not in logged.lower()
    # Still grouped: repeated attempts at one name share a digest; a known account is named.
    assert unknown_a.details == unknown_b.details
    assert len(unknown_a.details["unknown_login"]) == 16
    assert known.details == {"username": "alice"} and known.target_user_id == user.id


def test_unknown_user_costs_the_same_time_as_a_wrong_password(make_app: Any) -> None:
    # One backend is enough: the cost being compared is the password hash, not the database.
    app = make_app(RATELIMIT_ENABLED=False, LOGIN_THROTTLE_ACCOUNT_FREE=10_000,
                   LOGIN_THROTTLE_IP_FREE=10_000)
    client = app.test_client()
    with app.app_context():
        UserFactory(username="alice", email="alice@example.org")
    token = csrf_token(client, "/auth/login")
    timings: dict[str, list[float]] = {"unknown": [], "known": []}
    for _ in range(15):
        for kind, name in (("unknown", "mallory-unknown"), ("known", "alice")):
            # The CPU this process spent (Argon2's threads included), not the wall clock: on
            # a shared machine other processes' bursts stretched one side's wall times.
            start = time.process_time()
            resp = client.post("/auth/login", data={"username": name, "password": "wrong password!",
                                                    "csrf_token": token})
            timings[kind].append(time.process_time() - start)
            assert resp.status_code == 200 and GENERIC in resp.data
    unknown, known = statistics.median(timings["unknown"]), statistics.median(timings["known"])
    # One Argon2 verification dominates both; without the dummy hash "unknown" costs a
    # small fraction of "known", far outside this generous band.
    assert 0.5 < unknown / known < 2.0, (unknown, known)


@pytest.mark.asvs("V11.4.2", "V6.2.1")
def test_bcrypt_hash_is_upgraded_to_argon2id_on_login(client: FlaskClient) -> None:
    legacy = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    user = UserFactory(username="legacy", email="legacy@example.org", password_hash=legacy)
    sign_in(client, "legacy", PASSWORD)
    assert is_signed_in(client)
    db.session.refresh(user)
    assert user.password_hash.startswith("$argon2id$")


@pytest.mark.asvs("V11.4.2", "V6.2.1")
def test_legacy_bcrypt_password_that_normalisation_changes_still_signs_in(
    client: FlaskClient,
) -> None:
    # Flask-Bcrypt hashed the password as typed; NFKC turns the micro sign into a Greek mu
    # and the no-break space into a space, so the normalised form never matched again.
    typed = "caf\u00b5\u00a0latte-morning-42"
    legacy = bcrypt.hashpw(typed.encode(), bcrypt.gensalt(rounds=4)).decode()
    user = UserFactory(username="olduser", email="old@example.org", password_hash=legacy)
    sign_in(client, "olduser", "caf\u03bc latte-morning-43")  # a wrong password stays wrong
    assert not is_signed_in(client)

    sign_in(client, "olduser", typed)

    assert is_signed_in(client)
    db.session.refresh(user)
    assert user.password_hash.startswith("$argon2id$")  # upgraded, normalised from now on
    other = client.application.test_client()
    sign_in(other, "olduser", "caf\u03bc latte-morning-42")  # the NFKC spelling of it
    assert is_signed_in(other)


@pytest.mark.asvs("V11.4.2")
def test_weak_argon2_parameters_are_upgraded_on_login(client: FlaskClient) -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)
    user = UserFactory(username="oldparams", email="op@example.org", password_hash=weak)
    sign_in(client, "oldparams", PASSWORD)
    db.session.refresh(user)
    assert user.password_hash != weak and "m=65536" in user.password_hash


@pytest.mark.asvs("V6.2.9", "V6.2.1")
def test_129_character_password_is_refused_cleanly(client: FlaskClient, user: User) -> None:
    resp = sign_in(client, "alice", "x" * 129)
    assert resp.status_code == 200 and b"Field cannot be longer than 128" in resp.data
    assert not is_signed_in(client)


@pytest.mark.asvs("V6.2.8", "V6.2.9", "V11.4.2")
def test_long_passwords_are_not_truncated(client: FlaskClient) -> None:
    from bastion.security.passwords import hash_password

    long_pw = "ü" * 40 + " a long passphrase"  # 98 bytes in UTF-8
    UserFactory(username="longpw", email="long@example.org", password_hash=hash_password(long_pw))
    # Same first 72 bytes, different end: bcrypt would accept it; we must not.
    sign_in(client, "longpw", "ü" * 40 + " a long passphrasf")
    assert not is_signed_in(client)
    sign_in(client, "longpw", long_pw)
    assert is_signed_in(client)


@pytest.mark.asvs("V6.2.8")
def test_legacy_bcrypt_never_accepts_a_truncated_match(client: FlaskClient) -> None:
    pw = "b" * 72
    legacy = bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=4)).decode()
    UserFactory(username="trunc", email="trunc@example.org", password_hash=legacy)
    sign_in(client, "trunc", pw + "extra characters")
    assert not is_signed_in(client)


@pytest.mark.asvs("V7.2.4")
def test_session_fixation_cookie_set_before_login_is_useless(client: FlaskClient, user: User) -> None:
    client.get("/auth/login")
    planted = _cookie(client)  # what an attacker could have planted in the victim's browser
    sign_in(client, "alice")
    assert is_signed_in(client)
    assert _cookie(client) != planted
    attacker = client.application.test_client()
    attacker.set_cookie(COOKIE, planted, domain="localhost")
    assert not is_signed_in(attacker)


@pytest.mark.asvs("V7.2.4")
def test_signing_in_over_a_planted_live_session_never_reuses_its_id(
    client: FlaskClient, user: User
) -> None:
    """The only signed cookie carrying a session id an attacker can plant is one of their
    own live sessions. The sign-in page is not offered over it, and a sign-in posted over it
    anyway (with the session's own CSRF token) must mint a new id: were the id kept, the
    attacker's copy of the cookie would now be the victim's session."""
    UserFactory(username="mallory", email="mallory@example.org")
    attacker = client.application.test_client()
    sign_in(attacker, "mallory")
    planted = _cookie(attacker)
    client.set_cookie(COOKIE, planted, domain="localhost")
    assert client.get("/auth/login").status_code == 302
    client.post("/auth/login", data={"username": "alice", "password": PASSWORD,
                                     "csrf_token": csrf_token(client, "/account")})
    # Refused (the browser stays in the planted session) or signed in under a new id;
    # either way the attacker's copy of the cookie is still only the attacker.
    page = attacker.get("/account")
    assert page.status_code == 200, "the attacker's own session is untouched"
    assert "alice@example.org" not in page.get_data(as_text=True)
    assert "mallory@example.org" in page.get_data(as_text=True)


@pytest.mark.asvs("V7.4.1", "V7.2.1")
def test_logged_out_cookie_cannot_be_replayed(client: FlaskClient, user: User) -> None:
    sign_in(client, "alice")
    saved = _cookie(client)
    token = csrf_token(client, "/account")
    assert client.post("/auth/logout", data={"csrf_token": token}).status_code == 302
    assert not is_signed_in(client)
    replay = client.application.test_client()
    replay.set_cookie(COOKIE, saved, domain="localhost")
    assert not is_signed_in(replay)
    record = db.session.scalar(select(UserSession))
    assert record is not None and record.revoked_at is not None
    assert len(_events("logout")) == 1


@pytest.mark.asvs("V14.3.1")
def test_logout_clears_the_browsers_cache_and_storage(client: FlaskClient, user: User) -> None:
    sign_in(client, "alice")
    token = csrf_token(client, "/account")
    forged = client.post("/auth/logout", data={})  # no CSRF token: nothing happens
    assert "Clear-Site-Data" not in forged.headers and is_signed_in(client)
    resp = client.post("/auth/logout", data={"csrf_token": token})
    assert resp.status_code == 302
    directives = {d.strip() for d in resp.headers["Clear-Site-Data"].split(",")}
    assert directives == {'"cache"', '"storage"'}


def test_logout_is_post_only(client: FlaskClient, user: User) -> None:
    sign_in(client, "alice")
    assert client.get("/auth/logout").status_code == 405
    assert is_signed_in(client)


@pytest.mark.asvs("V7.3.1", "V7.3.2")
@pytest.mark.parametrize(("field", "age", "remember"), [
    ("last_seen_at", timedelta(minutes=31), False),  # idle
    ("created_at", timedelta(hours=13), False),  # absolute (expires_at follows)
    ("created_at", timedelta(days=31), True),  # remember me: still bounded
])
def test_sessions_expire(client: FlaskClient, user: User, field: str, age: timedelta,
                         remember: bool) -> None:
    sign_in(client, "alice", **({"remember": "y"} if remember else {}))
    record = db.session.scalar(select(UserSession))
    assert record is not None and record.remember is remember
    setattr(record, field, getattr(record, field) - age)
    if field == "created_at":
        record.expires_at -= age
    db.session.commit()
    assert not is_signed_in(client)


@pytest.mark.asvs("V7.3.2")
def test_a_remembered_cookie_lives_as_long_as_its_session_may(
    make_app: Any,
) -> None:
    """The cookie's Expires followed a fixed 30 days whatever BASTION_REMEMBER_DAYS said."""
    app = make_app(REMEMBER_DAYS=7)
    with app.app_context():
        UserFactory(username="rem", email="rem@example.org")
        client = app.test_client()
        sign_in(client, "rem", remember="y")
        cookie = client.get_cookie(COOKIE, domain="localhost")
        assert cookie is not None and cookie.expires is not None
        days = (cookie.expires - datetime.now(UTC)).total_seconds() / 86400
        record = db.session.scalar(select(UserSession))
        assert 6.9 < days <= 7.0
        assert abs((record.expires_at - utcnow()).total_seconds() / 86400 - 7) < 0.01


@pytest.mark.asvs("V7.3.1", "V7.4.1")
@pytest.mark.parametrize("how", ["idle", "disabled"])
def test_a_dead_sign_in_leaves_nothing_of_itself_in_the_cookie(
    client: FlaskClient, user: User, how: str
) -> None:
    # The cookie is signed, not encrypted: the user id and password fingerprint of an
    # expired sign-in stayed readable in it on a shared computer.
    sign_in(client, "alice")
    if how == "idle":
        record = db.session.scalar(select(UserSession))
        assert record is not None
        record.last_seen_at -= timedelta(minutes=31)
    else:
        user.disabled_at = utcnow()
    db.session.commit()

    client.get("/")

    app = client.application
    data = app.session_interface.get_signing_serializer(app).loads(_cookie(client))  # type: ignore[attr-defined]
    assert not {"sid", "pwd", "_user_id", "_id", "_fresh"} & set(data), data


@pytest.mark.asvs("V3.7.2")
def test_next_is_followed_only_when_local(client: FlaskClient, user: User) -> None:
    resp = sign_in(client, "alice", next="https://evil.example/")
    assert resp.headers["Location"] == "/"
    client.application.test_client()
    other = client.application.test_client()
    resp = sign_in(other, "alice", next="/account")
    assert resp.headers["Location"] == "/account"


@pytest.mark.asvs("V1.1.1")
@pytest.mark.parametrize("typed", ["ida@bücher.example", "IDA@XN--BCHER-KVA.EXAMPLE",
                                   full_width("ida@bücher.example")])
def test_signing_in_by_email_accepts_every_spelling_of_an_idn_domain(
    client: FlaskClient, typed: str
) -> None:
    UserFactory(username="ida", email="ida@xn--bcher-kva.example")
    sign_in(client, typed)
    assert is_signed_in(client)


def test_accounts_left_in_two_spellings_each_sign_in_by_their_own(client: FlaskClient) -> None:
    """Migration 0010 leaves them as they were; neither takes the other's sign-in."""
    from bastion.security.passwords import hash_password

    UserFactory(username="newer", email="ida@xn--bcher-kva.example")
    UserFactory(username="older", email="ida@bücher.example",
                password_hash=hash_password("the older account's passphrase"))
    sign_in(client, "ida@bücher.example", "the older account's passphrase")
    assert is_signed_in(client)
    other = client.application.test_client()
    sign_in(other, "ida@xn--bcher-kva.example")
    assert is_signed_in(other)


@pytest.mark.asvs("V2.2.1")
def test_an_invalid_idn_domain_at_sign_in_is_the_generic_failure(
    client: FlaskClient, user: User
) -> None:
    resp = sign_in(client, "alice@xn--zz.example")
    assert resp.status_code == 200 and GENERIC in resp.data


def test_a_visitor_sent_to_sign_in_is_told_why(client: FlaskClient) -> None:
    """A bookmark or link to a members' page lands on the sign-in form with a word why;
    a plain visit to the form (or "Sign in to comment") has no such word, and the API
    answers 401 without starting a session."""
    resp = client.get("/account")
    assert resp.status_code == 302 and resp.headers["Location"] == "/auth/login?next=/account"
    client.get("/articles/new")  # a second tab, before the first shows its page
    page = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert page.count("Please sign in to continue.") == 1
    # Said once: the message is not left behind for the next page.
    assert "Please sign in to continue." not in client.get("/auth/login").get_data(True)
    plain = client.get("/auth/login?next=/articles/1").get_data(as_text=True)
    assert "Please sign in to continue." not in plain
    api = client.get("/api/v1/me")
    assert api.status_code == 401 and "Set-Cookie" not in api.headers
