"""Brute force: growing delays per account and per IP, never a permanent lockout."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from bastion.auth import throttle
from bastion.extensions import db
from bastion.models import AuditEvent, User
from tests.factories import PASSWORD
from tests.support.account_fixtures import is_signed_in, sign_in

WRONG = "not the password at all"


def _fast_throttle(app: Flask, monkeypatch: Any, **extra: Any) -> None:
    settings = {"LOGIN_THROTTLE_ACCOUNT_FREE": 3, "LOGIN_THROTTLE_BASE_SECONDS": 0.5, **extra}
    for key, value in settings.items():
        monkeypatch.setitem(app.config, key, value)


class _Clock:
    """Stands in for the ``time`` module inside ``bastion.auth.throttle``."""

    def __init__(self) -> None:
        self.now = time.time()

    def time(self) -> float:
        return self.now


def _own_redis_keys(redis_url: str) -> dict[str, str]:
    """Redis settings whose keys only this test uses (and the fixture removes)."""
    prefix = os.environ["BASTION_TEST_REDIS_PREFIX"]
    return {"REDIS_URL": redis_url, "REDIS_PREFIX": prefix, "RATELIMIT_KEY_PREFIX": prefix}


def _waits() -> list[float]:
    rows = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "login.throttled"))
    return [float(r.details["wait"]) for r in rows]


@pytest.mark.asvs("V6.3.1", "V6.1.1")
def test_delay_grows_and_the_owner_gets_in_after_it(
    app: Flask, client: FlaskClient, user: User, no_rate_limits: None, monkeypatch: Any
) -> None:
    _fast_throttle(app, monkeypatch)
    # The throttle's own clock, moved by hand: waits read from a busy machine's wall
    # clock shrink by however long each request took.
    clock = _Clock()
    monkeypatch.setattr(throttle, "time", clock)
    for _ in range(3):
        assert sign_in(client, "alice", WRONG).status_code == 200
    first = sign_in(client, "alice", PASSWORD)  # even the right password waits
    assert first.status_code == 429 and "Retry-After" in first.headers
    assert b"Too many failed attempts" in first.data
    assert not is_signed_in(client)
    clock.now += 0.6
    assert sign_in(client, "alice", WRONG).status_code == 200  # 4th failure: delay doubles
    assert sign_in(client, "alice", PASSWORD).status_code == 429
    assert _waits() == [0.5, 1.0]
    clock.now += 1.1
    assert sign_in(client, "alice", PASSWORD).status_code == 302  # not a lockout
    assert is_signed_in(client)


@pytest.mark.asvs("V6.3.1")
def test_email_and_username_share_one_account_counter(
    app: Flask, client: FlaskClient, user: User, no_rate_limits: None, monkeypatch: Any
) -> None:
    _fast_throttle(app, monkeypatch, LOGIN_THROTTLE_BASE_SECONDS=30.0)
    for login in ("alice", "ALICE@example.org", "alice"):
        sign_in(client, login, WRONG)
    assert sign_in(client, "alice@example.org", PASSWORD).status_code == 429


@pytest.mark.asvs("V6.3.1")
def test_one_address_trying_many_accounts_is_slowed(
    app: Flask, client: FlaskClient, no_rate_limits: None, monkeypatch: Any
) -> None:
    _fast_throttle(app, monkeypatch, LOGIN_THROTTLE_IP_FREE=3, LOGIN_THROTTLE_BASE_SECONDS=30.0)
    for n in range(3):
        sign_in(client, f"victim{n}", WRONG)
    resp = sign_in(client, "someone-new", WRONG)
    assert resp.status_code == 429
    assert db.session.scalar(select(AuditEvent).where(AuditEvent.event == "login.throttled"))


def _from(app: Flask, address: str) -> FlaskClient:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


@pytest.mark.asvs("V6.3.1")
def test_an_ipv6_client_is_one_address_for_the_whole_of_its_64(
    app: Flask, no_rate_limits: None, monkeypatch: Any
) -> None:
    """A host given an IPv6 /64 (the usual assignment) holds 2**64 addresses: counted one
    by one, each new source address brought a fresh allowance, and trying many accounts
    from one machine was never slowed."""
    _fast_throttle(app, monkeypatch, LOGIN_THROTTLE_IP_FREE=3, LOGIN_THROTTLE_BASE_SECONDS=30.0)
    for n in range(3):
        sign_in(_from(app, f"2001:db8:1:2::{n + 1:x}"), f"victim{n}", WRONG)
    assert sign_in(_from(app, "2001:db8:1:2:ffff::9"), "someone-new", WRONG).status_code == 429
    assert sign_in(_from(app, "2001:db8:1:3::1"), "someone-else", WRONG).status_code == 200


def test_route_limit_answers_429_with_retry_after(client: FlaskClient, user: User) -> None:
    statuses = [sign_in(client, "nobody", "x").status_code for _ in range(12)]
    assert 429 in statuses


@pytest.mark.asvs("V6.3.1")
@pytest.mark.redis
def test_throttle_state_lives_in_redis_and_is_shared(make_app: Any, redis_url: str) -> None:
    prefix = os.environ["BASTION_TEST_REDIS_PREFIX"]
    settings = {"REDIS_URL": redis_url, "RATELIMIT_KEY_PREFIX": prefix, "RATELIMIT_ENABLED": False,
                "LOGIN_THROTTLE_ACCOUNT_FREE": 2, "LOGIN_THROTTLE_BASE_SECONDS": 30.0}
    first, second = make_app(**settings), make_app(**settings)
    client = first.test_client()
    for _ in range(2):
        assert sign_in(client, "ghost", WRONG).status_code == 200
    keys = redis.Redis.from_url(redis_url).keys(f"{prefix}:throttle:*")
    assert any(b"name:ghost" in k for k in keys)
    # Another instance (own database, same Redis) sees the same counter.
    assert sign_in(second.test_client(), "ghost", WRONG).status_code == 429


@pytest.mark.asvs("V6.3.1")
def test_a_failure_stored_a_moment_later_never_throttles_within_the_allowance(
    app: Flask, user: User, monkeypatch: Any
) -> None:
    """A concurrent request's failure may be stored after this one read the clock; below
    the free allowance that must not look like a wait (it used to refuse with "wait 0.0":
    people behind one address were turned away while others mistyped)."""
    from bastion.auth import throttle

    with app.test_request_context():
        assert throttle.reserve("somebody-else", "198.51.100.7") is None
        stored = time.time()
        monkeypatch.setattr(throttle.time, "time", lambda: stored - 0.004)
        assert throttle.reserve("alice", "198.51.100.7") is None
        # Past the allowance the wait is real, and never reported as zero.
        monkeypatch.setitem(app.config, "LOGIN_THROTTLE_IP_FREE", 1)
        wait = throttle.reserve("alice", "198.51.100.7")
        assert wait is not None and wait >= 0.01


@pytest.mark.asvs("V6.3.1", "V2.3.2")
@pytest.mark.parametrize("store", ["postgresql", "redis"])
def test_a_burst_of_parallel_guesses_gets_one_check_when_the_wait_ends(
    make_app: Any, redis_url: str, monkeypatch: Any, store: str
) -> None:
    """The attempt is counted before the hash: checking first and counting after the slow
    hash let twelve simultaneous guesses (from twelve addresses) all be checked."""
    import threading

    import bastion.security.passwords as passwords
    from bastion.auth import throttle
    from bastion.auth.login import Step, password_step
    from tests.factories import UserFactory

    redis_settings = _own_redis_keys(redis_url) if store == "redis" else {}
    app = make_app(backend="postgresql", RATELIMIT_ENABLED=False, LOGIN_THROTTLE_ACCOUNT_FREE=1,
                   LOGIN_THROTTLE_BASE_SECONDS=0.5, **redis_settings)
    real = passwords.verify_password

    def slow(hashed: str | None, password: str) -> bool:
        time.sleep(0.3)  # Argon2 under load: the window the burst aims at
        return real(hashed, password)

    monkeypatch.setattr(passwords, "verify_password", slow)
    # The throttle's clock stands still during the burst: on the wall clock, a guess that a
    # busy machine started more than the next wait (1 s) after the first was rightly let
    # through, and counted as a second check.
    clock = _Clock()
    monkeypatch.setattr(throttle, "time", clock)
    with app.app_context():
        UserFactory(username="alice", email="alice@example.org")
        db.session.commit()
        with app.test_request_context():
            assert throttle.reserve("alice", "10.0.0.1") is None  # one failure: past free
        clock.now += 0.6  # ... and its wait has just run out
        steps: list[Step] = []
        barrier = threading.Barrier(12)

        def guess(i: int) -> None:
            with app.test_request_context():
                barrier.wait()
                steps.append(password_step("alice", f"guess number {i:04d}", f"10.0.1.{i}").step)
                db.session.remove()

        threads = [threading.Thread(target=guess, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert steps.count(Step.FAILED) == 1, steps
    assert steps.count(Step.THROTTLED) == 11


@pytest.mark.asvs("V6.3.1")
def test_right_passwords_give_their_attempt_back(
    app: Flask, client: FlaskClient, user: User, no_rate_limits: None, monkeypatch: Any
) -> None:
    """Attempts are counted before the hash; people signing in behind one address (an
    office, a campus) must not use up that address's allowance by succeeding."""
    _fast_throttle(app, monkeypatch, LOGIN_THROTTLE_IP_FREE=3, LOGIN_THROTTLE_BASE_SECONDS=30.0)
    for _ in range(4):
        assert sign_in(client, "alice", PASSWORD).status_code == 302
        client.delete_cookie("__Host-session")  # the next sign-in starts signed out
    assert sign_in(client, "someone-new", WRONG).status_code == 200


@pytest.mark.asvs("V6.3.1", "V6.3.3")
@pytest.mark.parametrize("store", ["database", "redis"])
def test_a_right_password_leaves_the_wait_as_it_was_for_the_code(
    make_app: Any, redis_url: str, store: str
) -> None:
    """After failures and their wait, the owner's right password must not start a new wait
    that then refuses their 2FA code: giving the attempt back restores its time too."""
    from tests.factories import UserFactory
    from tests.support.account_fixtures import enable_2fa
    from tests.support.accounts import post_form, unused_code

    redis_settings = _own_redis_keys(redis_url) if store == "redis" else {}
    app = make_app(RATELIMIT_ENABLED=False, LOGIN_THROTTLE_ACCOUNT_FREE=3,
                   LOGIN_THROTTLE_BASE_SECONDS=0.5, **redis_settings)
    with app.app_context():
        user = UserFactory(username="tess", email="tess@example.org")
        secret = enable_2fa(user)
        client = app.test_client()
        for _ in range(3):
            assert sign_in(client, "tess", WRONG).status_code == 200
        time.sleep(0.6)  # the wait after three failures has run out
        assert sign_in(client, "tess", PASSWORD).headers["Location"] == "/auth/2fa"
        resp = post_form(client, "/auth/2fa", {"code": unused_code(secret, user.totp_last_step)})
        assert resp.status_code == 302, resp.status_code
        assert is_signed_in(client)


@pytest.mark.asvs("V6.3.1")
def test_people_behind_one_address_sign_in_one_after_another_after_its_wait(
    app: Flask, client: FlaskClient, no_rate_limits: None, monkeypatch: Any
) -> None:
    """Once the address's wait has run out, one person's sign-in must not start a new wait
    for the next (a giving-back that kept the attempt's time did)."""
    from tests.factories import UserFactory

    _fast_throttle(app, monkeypatch, LOGIN_THROTTLE_IP_FREE=2, LOGIN_THROTTLE_BASE_SECONDS=0.5)
    UserFactory(username="ann")
    UserFactory(username="ben")
    for name in ("x1", "x2"):
        assert sign_in(client, name, WRONG).status_code == 200
    time.sleep(0.6)
    assert sign_in(client, "ann", PASSWORD).status_code == 302
    client.delete_cookie("__Host-session")
    assert sign_in(client, "ben", PASSWORD).status_code == 302
