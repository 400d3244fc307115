"""The code form sent twice: the browser that signed in stays signed in and goes where its
sign-in went; a copy of the cookie from before the code still finishes nothing.

Each case runs on both stores of spent markers: the process's memory and Redis.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from bastion.extensions import db
from bastion.models import AuditEvent, User, UserSession
from tests.factories import UserFactory
from tests.support.account_fixtures import enable_2fa, is_signed_in, sign_in
from tests.support.accounts import unused_code
from tests.support.auth import csrf_token

COOKIE = "__Host-session"
MARKER_RE = re.compile(r'name="marker" type="hidden" value="([^"]*)"')
TARGET = "/account/sessions"  # where the sign-in was asked to go (the form's ``next``)


@pytest.fixture(params=["memory", "redis"])
def store_app(request: pytest.FixtureRequest, make_app: Any) -> Iterator[Flask]:
    """An app whose spent markers live in the process (no Redis) or in Redis."""
    if request.param == "memory":
        app = make_app()
    else:
        url = request.getfixturevalue("redis_url")
        prefix = os.environ["BASTION_TEST_REDIS_PREFIX"]
        app = make_app(REDIS_URL=url, REDIS_PREFIX=prefix, RATELIMIT_KEY_PREFIX=prefix)
    from bastion.extensions import limiter

    with app.app_context():
        limiter.reset()  # one limiter serves every app built here: start each test afresh
        yield app
        db.session.remove()


def _audited(event: str) -> int:
    return int(db.session.scalar(
        select(func.count()).select_from(AuditEvent).where(AuditEvent.event == event)
    ) or 0)


def _sessions() -> int:
    return int(db.session.scalar(select(func.count()).select_from(UserSession)) or 0)


def _tess() -> tuple[User, str]:
    user = UserFactory(username="tess", email="tess@example.org")
    secret = enable_2fa(user)
    user.totp_last_step = None  # a code of this 30-second step is still unused
    db.session.commit()
    return user, secret


def _code_form(client: FlaskClient, secret: str) -> tuple[dict[str, str], str]:
    """Password typed; the code form as the browser would send it (its hidden fields read
    off the page, the code typed), and the cookie of that moment."""
    assert sign_in(client, "tess", next=TARGET).headers["Location"] == "/auth/2fa"
    page = client.get("/auth/2fa").get_data(as_text=True)
    found = MARKER_RE.search(page)
    marker = found.group(1) if found else ""
    form = {"csrf_token": csrf_token(client, "/auth/2fa"), "marker": marker,
            "code": unused_code(secret, None)}
    return form, client.get_cookie(COOKIE, domain="localhost").value


@pytest.mark.asvs("V6.3.3")
def test_the_form_sent_again_with_the_new_cookie_goes_where_the_sign_in_went(
    store_app: Flask,
) -> None:
    """A double click whose second request left after the first answer (or the browser
    resubmitting, or a second tab): it carries the new session's cookie and the form of the
    marker that session finished. It was answered "This form has expired" (400)."""
    _, secret = _tess()
    browser = store_app.test_client()
    form, _ = _code_form(browser, secret)
    first = browser.post("/auth/2fa", data=form)
    assert first.status_code == 302 and first.headers["Location"] == TARGET

    again = browser.post("/auth/2fa", data=form)

    assert again.status_code == 302 and again.headers["Location"] == TARGET
    assert is_signed_in(browser)
    assert _sessions() == 1
    assert _audited("login.success") == 1
    assert _audited("csrf.failure") == 0 and _audited("login.pending_reused") == 0
    # Back to the code page afterwards: home, no "Sign in with your password first".
    back = browser.get("/auth/2fa")
    assert back.status_code == 302 and back.headers["Location"] == "/"
    assert "password first" not in browser.get("/").get_data(as_text=True)


@pytest.mark.asvs("V6.3.3", "V7.2.4")
def test_the_form_sent_again_with_the_old_cookie_leaves_the_new_sign_in_alone(
    store_app: Flask,
) -> None:
    """A double click whose second request left before the first answer came: it carries
    the cookie from before the code. Refused as a copy would be (no session, audited), but
    its answer writes no cookie: the browser, which stored the signed-in cookie from the
    first answer meanwhile, used to be signed out by it."""
    _, secret = _tess()
    browser = store_app.test_client()
    form, before = _code_form(browser, secret)
    assert browser.post("/auth/2fa", data=form).status_code == 302
    after = browser.get_cookie(COOKIE, domain="localhost").value
    second_click = store_app.test_client()  # what the second request carried
    second_click.set_cookie(COOKIE, before, domain="localhost")

    late = second_click.post("/auth/2fa", data=form)

    assert late.status_code == 302 and late.headers["Location"] == "/auth/login"
    assert "Set-Cookie" not in late.headers  # the browser keeps the cookie it holds
    assert not is_signed_in(second_click)
    assert _sessions() == 1
    assert _audited("login.success") == 1 and _audited("login.pending_reused") == 1
    # The browser follows the redirect with the signed-in cookie it holds: home.
    assert browser.get_cookie(COOKIE, domain="localhost").value == after
    onward = browser.get(late.headers["Location"])
    assert onward.status_code == 302 and onward.headers["Location"] == "/"
    assert is_signed_in(browser)


@pytest.mark.asvs("V6.3.3", "V7.2.4")
def test_a_copied_cookie_still_finishes_no_sign_in_however_often_it_is_replayed(
    store_app: Flask,
) -> None:
    """Whoever copied the cookie before the code (and the form with it) replays it, with
    the next code, once the owner is in: refused and audited each time. The refusal no
    longer empties the copy's cookie, so the spent marker itself must keep refusing."""
    user, secret = _tess()
    owner = store_app.test_client()
    form, copied = _code_form(owner, secret)
    assert owner.post("/auth/2fa", data=form).status_code == 302
    user.totp_last_step = None  # the next 30-second step: a code the owner has not used
    db.session.commit()
    attacker = store_app.test_client()
    attacker.set_cookie(COOKIE, copied, domain="localhost")

    for attempt in range(2):
        refused = attacker.post("/auth/2fa", data={**form, "code": unused_code(secret, None)})
        assert refused.status_code == 302 and refused.headers["Location"] == "/auth/login"
        assert not is_signed_in(attacker), attempt
    assert attacker.get("/auth/2fa").headers["Location"] == "/auth/login"
    assert _sessions() == 1
    assert _audited("login.success") == 1 and _audited("login.pending_reused") == 2


@pytest.mark.asvs("V3.5.1")
def test_the_code_form_still_needs_its_csrf_token_before_the_sign_in(
    store_app: Flask,
) -> None:
    """The form's CSRF check moved into the view (a signed-in browser sending it again is
    only redirected): before the sign-in, a post without the form's token or from another
    site is still a 400 and finishes nothing; the signed-in answer is a redirect."""
    _, secret = _tess()
    browser = store_app.test_client()
    form, _ = _code_form(browser, secret)
    for forged in ({**form, "csrf_token": "forged"}, {k: v for k, v in form.items()
                                                       if k != "csrf_token"}):
        refused = browser.post("/auth/2fa", data=forged)
        assert refused.status_code == 400 and b"This form has expired" in refused.data
    cross_site = browser.post("/auth/2fa", data=form, base_url="https://localhost",
                              headers={"Referer": "https://evil.test/"})
    assert cross_site.status_code == 400
    assert not is_signed_in(browser) and _sessions() == 0
    assert browser.post("/auth/2fa", data=form).headers["Location"] == TARGET
    stale = browser.post("/auth/2fa", data={"code": "000000"})
    assert stale.status_code == 302 and stale.headers["Location"] == "/"


def test_only_the_form_of_the_finished_marker_leads_to_its_target(store_app: Flask) -> None:
    """A code form of some other marker (an older tab), or none, sent by the signed-in
    browser goes home: the sign-in's target is kept for the form that finished it."""
    _, secret = _tess()
    browser = store_app.test_client()
    older, _ = _code_form(browser, secret)
    form, _ = _code_form(browser, secret)  # the password typed again: a new marker
    assert form["marker"] != older["marker"]
    assert browser.post("/auth/2fa", data=form).headers["Location"] == TARGET
    for other in (older, {**form, "marker": "x" * 32}, {**form, "marker": ""}):
        resp = browser.post("/auth/2fa", data=other)
        assert resp.status_code == 302 and resp.headers["Location"] == "/"
    assert is_signed_in(browser) and _sessions() == 1


@pytest.mark.asvs("V6.3.3")
def test_a_click_whose_code_another_click_used_meanwhile_writes_no_cookie(
    store_app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two clicks at once with the cookie from before the code: the second passes the
    marker check, then the first finishes with the same code (spending the code's time
    step and the marker) before the second checks the code. The second was answered "That
    code did not work" with a cookie that replaced the signed-in one in the browser."""
    from bastion.auth import pending, routes, twofactor

    _, secret = _tess()
    browser = store_app.test_client()
    form, before = _code_form(browser, secret)
    second_click = store_app.test_client()
    second_click.set_cookie(COOKIE, before, domain="localhost")
    real_step = routes.second_step
    finished: list[bool] = []

    def first_click_finishes_meanwhile(
        who: User, code: str, ip: str, nonce: object, expires_at: float
    ) -> Any:
        if not finished:  # what the first click's sign-in does to the shared state
            finished.append(twofactor.verify_totp_or_recovery(who, code)
                            and pending.claim(nonce, expires_at))
        return real_step(who, code, ip, nonce, expires_at)

    monkeypatch.setattr(routes, "second_step", first_click_finishes_meanwhile)

    late = second_click.post("/auth/2fa", data=form)

    assert finished == [True]
    assert late.status_code == 302 and late.headers["Location"] == "/auth/login"
    assert "Set-Cookie" not in late.headers  # the browser keeps the signed-in cookie
    assert not is_signed_in(second_click) and _sessions() == 0
