"""Account settings attacked with a stolen session: the way back from re-authentication and
what the owner hears of second-factor changes made in their name."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pyotp
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from bastion.account import services
from bastion.extensions import db
from bastion.models import User, UserSession, utcnow
from bastion.security.freshness import referring_page
from tests.factories import PASSWORD
from tests.support.account_fixtures import sign_in
from tests.support.accounts import Outbox, post_form, shown_totp_secret
from tests.support.auth import csrf_token
from tests.support.races import meet_after, race

NEXT_RE = re.compile(r'<input[^>]*name="next"[^>]*>')


def _stale() -> None:
    for record in db.session.scalars(select(UserSession)):
        record.reauth_at = utcnow() - timedelta(minutes=11)
    db.session.commit()


def _reauthenticate_from(client: FlaskClient, location: str) -> str:
    """Follow the redirect to /auth/reauth like a browser and sign the form; where to next."""
    page = client.get(location).get_data(as_text=True)
    tag = NEXT_RE.search(page)
    assert tag is not None
    value = re.search(r'value="([^"]*)"', tag.group(0))
    nxt = html.unescape(value.group(1)) if value else ""
    done = post_form(client, "/auth/reauth", {"password": PASSWORD, "next": nxt})
    assert done.status_code == 302
    return str(done.headers["Location"])


@pytest.mark.asvs("V7.5.1", "V3.7.2")
@pytest.mark.parametrize(
    ("referrer", "back_to"),
    [
        ("https://localhost/account/tokens?page=2", "/account/tokens?page=2"),
        # Same origin, but a path a browser reads as another host: never followed.
        ("https://localhost//evil.example/account", "/account"),
        ("https://localhost/\\evil.example", "/account"),
    ],
)
def test_a_stale_post_comes_back_to_its_form_after_reauthentication(
    client: FlaskClient, user: User, referrer: str, back_to: str
) -> None:
    """The Referer is a full URL, which the redirect check refuses: after entering their
    password the user always landed on /account instead of the form they were using."""
    sign_in(client, "alice")
    _stale()
    token = csrf_token(client, "/account/tokens")
    resp = client.post("/account/sessions/revoke-all", data={"csrf_token": token},
                       headers={"Referer": referrer})
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/auth/reauth")
    assert _reauthenticate_from(client, resp.headers["Location"]) == back_to


@pytest.mark.asvs("V7.5.1")
def test_a_mistyped_reauthentication_keeps_its_way_back(client: FlaskClient, user: User) -> None:
    """A refused re-authentication (an empty password) rendered the form with the query's
    target, which a posted form does not carry: the user then landed on /account."""
    sign_in(client, "alice")
    _stale()
    refused = post_form(client, "/auth/reauth?next=/elsewhere",
                        {"password": "", "next": "/account/tokens"})
    tag = NEXT_RE.search(refused.get_data(as_text=True))
    assert tag is not None and 'value="/account/tokens"' in tag.group(0)
    done = post_form(client, "/auth/reauth", {"password": PASSWORD, "next": "/account/tokens"})
    assert done.headers["Location"] == "/account/tokens"


@pytest.mark.asvs("V3.7.2")
@pytest.mark.parametrize(
    ("referrer", "expected"),
    [
        ("http://localhost/account?x=1", "/account?x=1"),
        ("HTTP://LOCALHOST/account", "/account"),
        ("http://evil.example/account", None),
        ("https://localhost/account", None),  # another scheme is another origin
        ("http://localhost:8080/account", None),
        ("http://[bad", None),  # not a URL: no 500
        ("/account", None),  # not a full URL: no origin to check
        ("http://localhost/%2F%2Fevil.example", None),
        (None, None),
    ],
)
def test_only_this_origins_pages_are_returned_to(
    app: Flask, referrer: str | None, expected: str | None
) -> None:
    """Over plain HTTP Flask-WTF does not check the Referer, so this check stands alone."""
    headers = {"Referer": referrer} if referrer else {}
    with app.test_request_context("/account/email", method="POST", base_url="http://localhost",
                                  headers=headers):
        assert referring_page() == expected


def _subjects(outbox: Outbox) -> list[str]:
    return [str(m["Subject"]) for m in outbox.to("alice@example.org")]


@pytest.mark.asvs("V7.5.1", "V6.3.3")
def test_the_owner_hears_of_every_second_factor_change(
    client: FlaskClient, user: User, outbox: Outbox
) -> None:
    """A stolen session that is still fresh can enrol its own app (locking the owner out),
    take new recovery codes or turn 2FA off. Password and email changes were mailed to the
    owner; these went unnoticed."""
    sign_in(client, "alice")
    page = client.get("/account/2fa").get_data(as_text=True)
    secret = shown_totp_secret(page)
    assert secret is not None
    post_form(client, "/account/2fa", {"code": pyotp.TOTP(secret).now()})
    db.session.refresh(user)
    assert user.has_2fa
    assert _subjects(outbox) == ["Two-factor authentication was turned on"]
    totp = pyotp.TOTP(secret)
    for action in ("/account/2fa/recovery-codes", "/account/2fa/disable"):
        user.totp_last_step = None  # as if the next 30 s step had come
        db.session.commit()
        post_form(client, "/account", {"code": totp.now()}, action=action)
    assert _subjects(outbox)[1:] == ["New recovery codes were made for your account",
                                     "Two-factor authentication was turned off"]
    notice = outbox.to("alice@example.org")[-1].get_body(preferencelist=("plain",))
    assert notice is not None
    text = notice.get_content()
    assert "https://localhost/auth/reset" in text and "no longer work" in text


@pytest.mark.asvs("V14.3.1", "V7.4.2")
def test_ending_this_browsers_session_from_the_account_page_clears_its_data(
    client: FlaskClient, user: User
) -> None:
    """Revoking "This device" or signing out everywhere is a sign-out too; only /auth/logout
    told the browser to drop the account's cached pages and storage."""
    phone = client.application.test_client()
    sign_in(phone, "alice")
    sign_in(client, "alice")
    mine = db.session.scalar(select(UserSession).order_by(UserSession.id.desc()))
    other = db.session.scalar(select(UserSession).order_by(UserSession.id))
    assert mine is not None and other is not None
    resp = post_form(client, "/account", {}, action=f"/account/sessions/{other.id}/revoke")
    assert "Clear-Site-Data" not in resp.headers  # this browser stays signed in
    resp = post_form(client, "/account", {}, action=f"/account/sessions/{mine.id}/revoke")
    assert resp.headers["Location"] == "/auth/login"
    assert resp.headers["Clear-Site-Data"] == '"cache", "storage"'
    sign_in(client, "alice")
    resp = post_form(client, "/account", {}, action="/account/sessions/revoke-all")
    assert resp.headers["Clear-Site-Data"] == '"cache", "storage"'


# ----------------------------------------------------------------- email change ---
@pytest.mark.asvs("V7.5.1", "V6.4.1")
def test_a_newer_email_change_request_kills_the_link_of_an_earlier_one(
    app: Flask, client: FlaskClient, user: User, outbox: Outbox
) -> None:
    """The owner mistypes the new address, then asks again with the right one. The holder
    of the mistyped address must not be able to confirm it afterwards: the account's email
    would be theirs, and a password reset to it the whole account."""
    sign_in(client, "alice")
    assert post_form(client, "/account", {"email": "alice@examp1e.org"},
                     action="/account/email").status_code == 302
    mistyped = outbox.link("alice@examp1e.org", "/account/email/")
    assert post_form(client, "/account", {"email": "alice@example.net"},
                     action="/account/email").status_code == 302
    right = outbox.link("alice@example.net", "/account/email/")

    stranger = app.test_client()
    assert stranger.get(mistyped).status_code == 404
    held = csrf_token(stranger, "/auth/login")
    assert stranger.post(mistyped, data={"csrf_token": held}).status_code == 404
    db.session.refresh(user)
    assert user.email == "alice@example.org"
    assert post_form(client, right, {}).status_code == 302
    db.session.refresh(user)
    assert user.email == "alice@example.net"


@pytest.mark.asvs("V7.5.1", "V6.4.1")
def test_two_email_change_requests_at_once_leave_one_live_link(
    app: Flask, monkeypatch: pytest.MonkeyPatch, user: User, outbox: Outbox
) -> None:
    """Both requests read the same account state; only one may leave a live link, and the
    other gets a clear answer, not a 500 and not a second live link."""
    browsers = []
    for _ in range(2):
        browser = app.test_client()
        sign_in(browser, "alice")
        browsers.append((browser, csrf_token(browser, "/account")))
    addresses = ("alice@example.net", "alice@example.com")
    meet_after(monkeypatch, services, "email_spellings", 2, rounds=1)

    results = race([
        lambda b=b, t=t, a=a: b.post("/account/email", data={"csrf_token": t, "email": a})
        for (b, t), a in zip(browsers, addresses, strict=True)
    ])

    assert sorted(r.status_code for r in results) == [302, 422], results
    assert "changed while" in next(r for r in results if r.status_code == 422).get_data(as_text=True)
    mailed = [a for a in addresses if outbox.to(a)]
    assert len(mailed) == 1
    assert post_form(app.test_client(), outbox.link(mailed[0], "/account/email/"),
                     {}).status_code == 302
    db.session.refresh(user)
    assert user.email == mailed[0]
