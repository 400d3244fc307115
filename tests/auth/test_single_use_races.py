"""Emailed links and one-time codes used by two requests at once, on SQLite and PostgreSQL.

Each racer is a browser of its own (a test client in its own thread, so its own app context,
session and connection) that already holds the page's CSRF token. The racers meet at a
``threading.Barrier`` after every read of the link, so both decide on the same state; then
exactly one may change it and be audited, and the other gets the answer a link already
used gets (never a 500).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import pyotp
import pytest
from flask import Flask
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from bastion.auth import links
from bastion.extensions import db
from bastion.models import AuditEvent, User
from bastion.security.passwords import verify_password
from bastion.setup.services import issue_setup_token
from tests.factories import PASSWORD, TOTP_SECRET, UserFactory
from tests.support.account_fixtures import sign_in
from tests.support.accounts import Outbox, post_form, shown_totp_secret
from tests.support.auth import csrf_token
from tests.support.races import meet_after, race

PASSWORDS = ("lilac harbour quietly 2031", "copper lantern sideways 77")

def _meet_after(
    monkeypatch: pytest.MonkeyPatch, owner: object, name: str, parties: int, rounds: int = 2
) -> None:
    """Make the racers wait for each other after their first ``rounds`` calls of
    ``owner.name`` (a view checks a link, then its service reads it again)."""
    meet_after(monkeypatch, owner, name, parties, rounds)


def _race(requests: list[Callable[[], TestResponse]]) -> list[Any]:
    """Send the requests at once, each from its own thread; responses or exceptions."""
    return race(list(requests))


def _posts(app: Flask, page: str, forms: list[dict[str, str]]) -> list[Callable[[], TestResponse]]:
    """One browser per form, each with the page's CSRF token fetched before the race."""
    out: list[Callable[[], TestResponse]] = []
    for form in forms:
        browser = app.test_client()
        data = {"csrf_token": csrf_token(browser, page), **form}
        out.append(partial(browser.post, page, data=data))
    return out


def _statuses(results: list[Any]) -> list[int]:
    assert not [r for r in results if isinstance(r, Exception)], results
    return sorted(r.status_code for r in results)


def _audited(event: str) -> int:
    return db.session.scalar(
        select(func.count()).select_from(AuditEvent).where(AuditEvent.event == event)
    ) or 0


def _user(uid: int) -> User:
    user = db.session.get(User, uid)
    assert user is not None
    return user


# ------------------------------------------------------------------ password reset ---
@pytest.mark.asvs("V6.4.3", "V2.3.3")
def test_a_password_set_after_a_link_was_read_makes_its_claim_fail(
    app: Flask, user: User
) -> None:
    """The claim compares the address and the stamp only: a new password renews the
    stamp by itself, not only through the end of every session that callers add."""
    from bastion.auth.services import set_password

    found = links.read_token("reset", links.make_token("reset", user), 60)
    assert found is not None
    uid = user.id

    def elsewhere() -> None:  # another request, with its own session
        with app.app_context():
            set_password(_user(uid), PASSWORDS[1], commit=True)
            db.session.remove()

    worker = threading.Thread(target=elsewhere)
    worker.start()
    worker.join(30)
    assert not links.claim(found[0])
    db.session.rollback()



@pytest.mark.asvs("V6.4.3", "V6.4.1", "V2.3.3")
def test_one_reset_link_posted_twice_at_once_sets_one_password(
    app: Flask, monkeypatch: pytest.MonkeyPatch, user: User, outbox: Outbox
) -> None:
    post_form(app.test_client(), "/auth/reset", {"email": "alice@example.org"})
    link = outbox.link("alice@example.org", "/auth/reset/")
    uid = user.id
    requests = _posts(app, link, [{"password": pw, "confirm": pw} for pw in PASSWORDS])
    _meet_after(monkeypatch, links, "read_token", 2)

    results = _race(requests)

    assert _statuses(results) == [302, 404], results
    winner = PASSWORDS[[r.status_code for r in results].index(302)]
    loser = PASSWORDS[1 - PASSWORDS.index(winner)]
    stored = _user(uid).password_hash
    assert verify_password(stored, winner) and not verify_password(stored, loser)
    assert _audited("password.reset") == 1
    assert len([m for m in outbox.to("alice@example.org") if "changed" in str(m["Subject"])]) == 1


@pytest.mark.asvs("V6.4.1", "V6.4.3", "V2.3.3")
def test_a_reset_racing_an_email_change_of_the_account_lets_one_win(
    app: Flask, monkeypatch: pytest.MonkeyPatch, user: User, outbox: Outbox
) -> None:
    """A reset link mailed to the old address dies with an email change (and the change's
    link with a reset): used at the same moment, still only one of them may act."""
    post_form(app.test_client(), "/auth/reset", {"email": "alice@example.org"})
    reset = outbox.link("alice@example.org", "/auth/reset/")
    change = f"/account/email/{links.make_token('email_change', user, new='alice2@example.org')}"
    uid, before = user.id, user.password_hash
    requests = [
        *_posts(app, reset, [{"password": PASSWORDS[0], "confirm": PASSWORDS[0]}]),
        *_posts(app, change, [{}]),
    ]
    _meet_after(monkeypatch, links, "read_token", 2)

    results = _race(requests)

    assert _statuses(results) == [302, 404], results
    after = _user(uid)
    reset_won = results[0].status_code == 302
    assert (after.password_hash != before) is reset_won
    assert (after.email == "alice2@example.org") is not reset_won
    assert _audited("password.reset") + _audited("email.changed") == 1


# -------------------------------------------------------------- email confirmation ---
@pytest.mark.asvs("V6.4.1", "V2.3.3")
def test_one_confirmation_link_posted_twice_at_once_confirms_once(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The address is confirmed and audited once; the other request gets what a second
    click on a used confirmation link gets (the link works while it lives, harmlessly)."""
    newbie = UserFactory(username="newbie", email="newbie@example.org", email_confirmed_at=None)
    uid, link = newbie.id, f"/auth/confirm/{links.make_token('confirm', newbie)}"
    requests = _posts(app, link, [{}, {}])
    _meet_after(monkeypatch, links, "read_token", 2)

    results = _race(requests)

    assert _statuses(results) == [302, 302], results
    assert _user(uid).email_confirmed_at is not None
    assert _audited("email.confirmed") == 1
    monkeypatch.undo()
    assert post_form(app.test_client(), link, {}).status_code == 302  # as a later click


# ------------------------------------------------------------------- email change ---
@pytest.mark.asvs("V6.4.1", "V2.3.3")
def test_one_email_change_link_posted_twice_at_once_changes_once(
    app: Flask, monkeypatch: pytest.MonkeyPatch, user: User
) -> None:
    uid = user.id
    link = f"/account/email/{links.make_token('email_change', user, new='alice2@example.org')}"
    requests = _posts(app, link, [{}, {}])
    _meet_after(monkeypatch, links, "read_token", 2)

    results = _race(requests)

    assert _statuses(results) == [302, 404], results
    assert _user(uid).email == "alice2@example.org"
    assert _audited("email.changed") == 1


@pytest.mark.asvs("V2.3.3", "V16.5.1")
def test_two_accounts_taking_one_new_address_at_once_get_an_answer_not_a_500(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both links are live and the address free when read; the unique index stops the
    second change, which gets the "now used by another account" message."""
    a = UserFactory(username="alice", email="alice@example.org")
    b = UserFactory(username="bob", email="bob@example.org")
    new = "shared@example.org"
    pages = [f"/account/email/{links.make_token('email_change', u, new=new)}" for u in (a, b)]
    requests = [*_posts(app, pages[0], [{}]), *_posts(app, pages[1], [{}])]
    _meet_after(monkeypatch, links, "read_token", 2)

    results = _race(requests)

    assert _statuses(results) == [302, 302], results
    emails = sorted(u.email for u in (_user(a.id), _user(b.id)))
    assert new in emails and len(set(emails)) == 2
    assert _audited("email.changed") == 1


# -------------------------------------------------------------------------- setup ---
@pytest.mark.asvs("V6.4.1", "V2.3.3")
def test_one_setup_link_posted_twice_at_once_makes_one_admin(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bastion.setup import services as setup

    page = f"/setup/{issue_setup_token()}"
    forms = [{"username": f"admin{i}", "email": f"admin{i}@example.org",
              "password": PASSWORDS[i], "confirm": PASSWORDS[i]} for i in range(2)]
    requests = _posts(app, page, forms)
    _meet_after(monkeypatch, setup, "token_is_valid", 2)

    assert _statuses(_race(requests)) == [302, 404]
    assert db.session.scalar(select(func.count()).select_from(User)) == 1
    assert _audited("setup.admin_created") == 1


# ------------------------------------------------------------ second sign-in step ---
@pytest.mark.asvs("V6.5.1")
@pytest.mark.parametrize("factor", ["totp", "recovery code"])
def test_one_second_factor_code_posted_twice_at_once_signs_in_once(
    app: Flask, monkeypatch: pytest.MonkeyPatch, factor: str
) -> None:
    """Two browsers past the password step send the same code: one session, one refusal."""
    from bastion.auth import twofactor
    from bastion.models import UserSession

    tess = UserFactory(username="tess", email="tess@example.org", two_factor=True)
    (recovery, *_) = twofactor.new_recovery_codes(tess)
    db.session.commit()
    browsers = [app.test_client() for _ in range(2)]
    forms = []
    for browser in browsers:
        assert sign_in(browser, "tess", PASSWORD).headers["Location"].startswith("/auth/2fa")
        forms.append({"csrf_token": csrf_token(browser, "/auth/2fa")})
    code = pyotp.TOTP(TOTP_SECRET).now() if factor == "totp" else recovery
    # Right before each request's conditional UPDATE.
    _meet_after(monkeypatch, twofactor, "_matching_step" if factor == "totp" else "_code_hash",
                2, rounds=1)

    results = _race([
        partial(b.post, "/auth/2fa", data={**f, "code": code})
        for b, f in zip(browsers, forms, strict=True)
    ])

    assert _statuses(results) == [200, 302], results
    assert db.session.scalar(select(func.count()).select_from(UserSession)) == 1
    if factor == "recovery code":
        assert _audited("2fa.recovery_code_used") == 1


@pytest.mark.asvs("V6.3.3", "V7.2.4")
def test_one_pending_marker_finished_twice_at_once_signs_in_once(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two requests carry the same marker (a copied cookie, or two tabs) with two right
    codes, a TOTP code and a recovery code: both pass the check that the marker is unspent,
    then only one claims it. The other is sent to the password step, never a 500."""
    from bastion.auth import pending, twofactor
    from bastion.models import UserSession

    tess = UserFactory(username="tess", email="tess@example.org", two_factor=True)
    (recovery, *_) = twofactor.new_recovery_codes(tess)
    db.session.commit()
    owner = app.test_client()
    assert sign_in(owner, "tess", PASSWORD).headers["Location"].startswith("/auth/2fa")
    token = csrf_token(owner, "/auth/2fa")
    cookie = owner.get_cookie("__Host-session", domain="localhost").value
    browsers = [app.test_client() for _ in range(2)]
    for browser in browsers:
        browser.set_cookie("__Host-session", cookie, domain="localhost")
    codes = [pyotp.TOTP(TOTP_SECRET).now(), recovery]
    _meet_after(monkeypatch, pending, "spent", 2, rounds=1)

    results = _race([
        partial(b.post, "/auth/2fa", data={"csrf_token": token, "code": code})
        for b, code in zip(browsers, codes, strict=True)
    ])

    assert _statuses(results) == [302, 302], results
    assert sorted(r.headers["Location"] for r in results) == ["/", "/auth/login"]
    assert db.session.scalar(select(func.count()).select_from(UserSession)) == 1
    assert _audited("login.success") == 1 and _audited("login.pending_reused") == 1


@pytest.mark.asvs("V6.3.3", "V7.2.4")
def test_without_redis_one_of_many_claims_on_a_marker_at_once_wins(
    make_app: Callable[..., Flask],
) -> None:
    """Without Redis the spent markers are kept in the process, whose threads finish sign-ins
    at once: of the threads claiming one marker together, exactly one may win, every time.
    The rate limiter's memory store counted outside its lock: two could win, or none."""
    from bastion.auth import pending

    app = make_app()
    assert not app.config.get("REDIS_URL")
    threads, rounds = 8, 1500
    nonces = [pending.new_nonce() for _ in range(rounds)]
    wins = [[False] * threads for _ in range(rounds)]
    barrier = threading.Barrier(threads)

    def racer(index: int) -> None:
        with app.app_context():
            for number, nonce in enumerate(nonces):
                barrier.wait(30)  # a broken barrier fails the test, never hangs it
                wins[number][index] = pending.claim(nonce, time.time() + 60)

    switching = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads take turns every few bytecodes, as under load
    try:
        racers = [threading.Thread(target=racer, args=(i,)) for i in range(threads)]
        for racer_thread in racers:
            racer_thread.start()
        for racer_thread in racers:
            racer_thread.join()
    finally:
        sys.setswitchinterval(switching)
    assert [n for n, won in enumerate(wins) if sum(won) != 1] == []
    with app.app_context():  # and a won claim stays won
        assert not any(pending.claim(nonce, time.time() + 60) for nonce in nonces[:10])


# ------------------------------------------------------------- API refresh tokens ---
@pytest.mark.asvs("V7.4.1", "V16.5.1")
def test_one_refresh_token_posted_twice_at_once_gives_one_pair_and_no_500(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rotation marks the token used with a conditional UPDATE; the loser is a reuse and
    ends the family, the winner's new pair included (reuse detection). When the loser's
    revocation lands before the winner looks at its family again, the winner is refused
    too: never two pairs, never a live one."""
    from bastion.api import tokens
    from bastion.models import RefreshToken

    pair = tokens.issue_pair(UserFactory())
    browsers = [app.test_client() for _ in range(2)]
    _meet_after(monkeypatch, tokens, "user_for", 2, rounds=1)

    body = {"refresh_token": pair.refresh_token}
    results = _race([partial(b.post, "/api/v1/auth/refresh", json=body) for b in browsers])

    assert _statuses(results) in ([200, 401], [401, 401]), results
    live = select(func.count()).where(RefreshToken.revoked_at.is_(None))
    assert db.session.scalar(live) == 0
    assert _audited("token.refresh_reuse") == 1


# ------------------------------------------------------------------ 2FA enrolment ---
@pytest.mark.asvs("V6.5.1", "V2.3.3")
def test_two_enrolments_at_once_enable_two_factor_once(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Codes of two adjacent steps both pass the replay check (the later one second); two
    tabs enrolling at once each turned 2FA on and showed recovery codes, one set dead."""
    from datetime import timedelta

    from bastion.auth import twofactor
    from bastion.models import RecoveryCode, utcnow

    uid = UserFactory(two_factor=True, totp_enabled_at=None).id
    totp = pyotp.TOTP(TOTP_SECRET)
    now = utcnow()
    codes = [totp.at(now - timedelta(seconds=30)), totp.at(now)]  # older step first
    # Both codes stay valid: once the next step began, the older one was simply refused and
    # the two enrolments never raced.
    monkeypatch.setattr(twofactor, "utcnow", lambda: now)
    _meet_after(monkeypatch, twofactor, "_matching_step", 2, rounds=1)
    shown: list[Any] = [None, None]

    def enrol(i: int) -> TestResponse:
        with app.app_context():
            shown[i] = twofactor.enable(_user(uid), codes[i])
            db.session.remove()
        return None  # type: ignore[return-value]

    results = _race([partial(enrol, 0), partial(enrol, 1)])

    assert not [r for r in results if isinstance(r, Exception)], results
    assert sum(1 for codes_shown in shown if codes_shown) == 1, shown
    assert _audited("2fa.enabled") == 1
    (winner,) = [codes_shown for codes_shown in shown if codes_shown]
    stored = db.session.scalar(
        select(func.count()).select_from(RecoveryCode).where(RecoveryCode.user_id == uid)
    )
    assert stored == len(winner)  # the codes shown are the codes that work



def _loser_waits_for_the_winner(
    monkeypatch: pytest.MonkeyPatch, loser: Callable[[], None]
) -> Callable[[], None]:
    """Interleave two enrolments at the user's row lock, the same on SQLite and PostgreSQL:
    the winner (this thread) starts ``loser`` in a thread when it reaches the lock, and
    waits until the loser has got as far as the lock too (or finished); the loser takes it
    only once the winner is done, which the test says by calling the function returned
    (it waits for the loser to finish)."""
    from bastion.auth import twofactor

    real_lock = twofactor.lock_user
    winner = threading.current_thread()
    loser_at_lock, winner_done = threading.Event(), threading.Event()
    started: list[threading.Thread] = []

    def run_loser() -> None:
        try:
            loser()
        finally:
            loser_at_lock.set()

    def lock(user_id: int) -> None:
        if threading.current_thread() is winner:
            if not loser_at_lock.is_set():
                started.append(threading.Thread(target=run_loser))
                started[0].start()
                assert loser_at_lock.wait(10), "the loser never reached the lock"
        else:
            loser_at_lock.set()
            assert winner_done.wait(10), "the winner never finished"
        real_lock(user_id)

    def finish() -> None:
        winner_done.set()
        for thread in started:
            thread.join(30)
            assert not thread.is_alive(), "the loser hung"

    monkeypatch.setattr(twofactor, "lock_user", lock)
    return finish


@pytest.mark.asvs("V6.5.1")
def test_an_enrolment_that_loses_the_race_spends_no_time_step(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The code's time step was spent before the row lock and the checks under it: a tab
    that found 2FA already on had still used up its step, so the owner's current code was
    refused as a replay for up to 30 s although it had enabled nothing."""
    from datetime import timedelta

    from bastion.auth import twofactor
    from bastion.models import utcnow

    uid = UserFactory(two_factor=True, totp_enabled_at=None).id
    totp = pyotp.TOTP(TOTP_SECRET)
    now = utcnow()
    older, newer = totp.at(now - timedelta(seconds=30)), totp.at(now)
    monkeypatch.setattr(twofactor, "utcnow", lambda: now)
    lost: list[Any] = []

    def loser() -> None:
        with app.app_context():
            try:
                lost.append(twofactor.enable(_user(uid), newer))
            except Exception as exc:  # asserted on below
                lost.append(exc)
            finally:
                db.session.remove()

    finish = _loser_waits_for_the_winner(monkeypatch, loser)
    try:
        won = twofactor.enable(_user(uid), older)
    finally:
        finish()

    assert won is not None and lost == [None]
    assert _audited("2fa.enabled") == 1
    db.session.expire_all()
    user = _user(uid)
    assert not twofactor.verify_totp_or_recovery(user, older)  # the enrolment code: spent
    assert twofactor.verify_totp_or_recovery(user, newer)  # the loser's: still the owner's
    assert not twofactor.verify_totp_or_recovery(user, newer)  # and once only


def test_a_double_clicked_enrolment_answers_the_second_click_that_2fa_is_on(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The browser shows the answer to the second click. It used to be "That code is not
    right" and the setup page again, while the first click was turning 2FA on with the
    very same code; now the second waits for the first and says 2FA is on."""
    UserFactory(username="alice", email="alice@example.org")
    first = app.test_client()
    sign_in(first, "alice")
    secret = shown_totp_secret(first.get("/account/2fa").get_data(as_text=True))
    assert secret is not None
    form = {"csrf_token": csrf_token(first, "/account/2fa"), "code": pyotp.TOTP(secret).now()}
    cookie = first.get_cookie("__Host-session")
    assert cookie is not None
    second = app.test_client()  # the same browser: the same session cookie
    second.set_cookie("__Host-session", cookie.value)
    answers: list[Any] = []

    def second_click() -> None:
        try:
            answers.append(second.post("/account/2fa", data=form))
        except Exception as exc:  # asserted on below
            answers.append(exc)

    finish = _loser_waits_for_the_winner(monkeypatch, second_click)
    try:
        shown = first.post("/account/2fa", data=form)
    finally:
        finish()

    assert shown.status_code == 200 and "recovery" in shown.get_data(as_text=True).lower()
    (answer,) = answers
    assert not isinstance(answer, Exception), answer
    assert answer.status_code == 302, answer.get_data(as_text=True)
    assert answer.headers["Location"].endswith("/account")
    account_page = second.get("/account").get_data(as_text=True)
    assert "Two-factor authentication is already on." in account_page
    assert _audited("2fa.enabled") == 1


@pytest.mark.asvs("V6.3.3", "V2.3.3")
@pytest.mark.parametrize("late", ["setup page", "enrolment"])
def test_a_secret_replaced_while_the_owner_enrols_is_never_the_enabled_one(
    app: Flask, monkeypatch: pytest.MonkeyPatch, late: str
) -> None:
    """A second session (a stolen fresh cookie) opening the setup page replaces the pending
    secret. Interleaved with the owner's enrolment, the page's write used to land on the
    factor just enabled, or the enabling write on the secret just replaced: 2FA was on with
    the secret shown to the other session, the owner's app was refused and whoever held
    that session held the second factor. ``late`` is the request whose write comes last;
    the other runs from start to finish just before it."""
    from bastion.auth import twofactor

    uid = UserFactory(username="alice", email="alice@example.org").id
    owner, other = app.test_client(), app.test_client()
    sign_in(owner, "alice")
    sign_in(other, "alice")
    mine = shown_totp_secret(owner.get("/account/2fa").get_data(as_text=True))
    assert mine is not None
    form = {"csrf_token": csrf_token(owner, "/account/2fa"), "code": pyotp.TOTP(mine).now()}
    shown_elsewhere: list[str | None] = []

    def open_setup_page() -> None:
        page = other.get("/account/2fa").get_data(as_text=True)
        shown_elsewhere.append(shown_totp_secret(page))

    def enrol() -> None:
        owner.post("/account/2fa", data=form)

    # The late request's last step before its write: the page draws its new secret, the
    # enrolment takes the user's row lock once the code has passed.
    early, late_request, (owner_module, point) = (
        (enrol, open_setup_page, (twofactor.pyotp, "random_base32")) if late == "setup page"
        else (open_setup_page, enrol, (twofactor, "lock_user"))
    )
    real = getattr(owner_module, point)
    fired = threading.Event()

    def interleave(*args: Any, **kwargs: Any) -> Any:
        if not fired.is_set():
            fired.set()
            worker = threading.Thread(target=early)
            worker.start()
            worker.join(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner_module, point, interleave)
    late_request()

    assert fired.is_set()
    user = _user(uid)
    db.session.refresh(user)
    if user.has_2fa:  # the factor that is on is the owner's, never one shown elsewhere
        assert twofactor._secret_of(user) == mine
        assert mine not in shown_elsewhere


@pytest.mark.asvs("V6.5.1", "V2.3.3")
def test_two_regenerations_at_once_leave_one_set_of_recovery_codes(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two tabs regenerating at once: on PostgreSQL each request's delete missed the other's
    uncommitted codes, so twenty codes worked, ten of them shown in a tab since closed."""
    from bastion.auth import twofactor
    from bastion.models import RecoveryCode

    uid = UserFactory(two_factor=True).id
    _meet_after(monkeypatch, twofactor, "_new_code", 2, rounds=1)
    shown: list[list[str]] = [[], []]

    def regenerate(i: int) -> TestResponse:
        with app.app_context():
            shown[i] = twofactor.regenerate(_user(uid))
            db.session.remove()
        return None  # type: ignore[return-value]

    results = _race([partial(regenerate, 0), partial(regenerate, 1)])

    assert not [r for r in results if isinstance(r, Exception)], results
    db.session.expire_all()
    stored = set(db.session.scalars(
        select(RecoveryCode.code_hash).where(RecoveryCode.user_id == uid)
    ))
    assert len(stored) == twofactor.RECOVERY_CODE_COUNT
    assert stored in ({twofactor._code_hash(c) for c in codes} for codes in shown)
