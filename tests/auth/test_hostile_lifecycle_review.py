"""The account lifecycle as a prober sees it: what a sign-up leaves behind that tells a
taken address from a free one, and where the secret of an emailed link travels."""

from __future__ import annotations

from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from bastion.auth.services import USERNAME_TAKEN
from bastion.extensions import db
from bastion.models import User, utcnow
from tests.factories import UserFactory
from tests.support.account_fixtures import sign_in
from tests.support.accounts import Outbox, post_form

TARGET = "target@example.org"
PW = "lilac harbour quietly 2031"
PROBE = {"username": "probe-one", "email": TARGET, "password": PW, "confirm": PW}


def _register(client: FlaskClient, **fields: str) -> tuple[int, str]:
    resp = post_form(client, "/auth/register", {**PROBE, **fields})
    return resp.status_code, resp.get_data(as_text=True)


@pytest.mark.parametrize("taken", [False, True], ids=["free", "taken"])
def test_a_sign_up_holds_its_username_whether_or_not_its_address_was_taken(
    client: FlaskClient, taken: bool
) -> None:
    """A sign-up with a free address started an account, which held the username; one with
    a taken address started none. Signing up again with the same username and an address
    of one's own then said which: "That username is taken." for a free address, a new
    account for a taken one. Any address could be probed this way, one username each."""
    if taken:
        UserFactory(username="owner", email=TARGET)
    assert _register(client)[0] == 302
    status, page = _register(client, email="fresh@attacker.example")
    assert (status, USERNAME_TAKEN in page) == (422, True)


def test_a_username_held_by_a_sign_up_never_confirmed_in_time_is_free_again(
    app: Flask, client: FlaskClient
) -> None:
    """A taken address holds the username only for as long as a confirmation link lives;
    the account a free address started must not hold it longer (its link is dead, and
    ``users purge-unconfirmed`` would delete it), or waiting that long tells them apart."""
    hours = app.config["CONFIRM_HOURS"]
    stale = UserFactory(username="probe-one", email=TARGET, email_confirmed_at=None,
                        created_at=utcnow() - timedelta(hours=hours, minutes=1))
    young = UserFactory(username="probe-two", email="other@example.org", email_confirmed_at=None,
                        created_at=utcnow() - timedelta(hours=hours, minutes=-5))
    stale_id = stale.id
    assert _register(client, email="fresh@attacker.example")[0] == 302
    status, page = _register(client, username="probe-two", email="fresh2@attacker.example")
    assert (status, USERNAME_TAKEN in page) == (422, True)
    db.session.expire_all()
    owner = db.session.scalar(select(User).where(User.username == "probe-one"))
    assert owner is not None and owner.id != stale_id and owner.email == "fresh@attacker.example"
    assert db.session.get(User, young.id) is not None


@pytest.mark.parametrize("taken", [False, True], ids=["free", "taken"])
def test_a_sign_up_never_confirmed_shares_no_throttle_with_its_address(
    app: Flask, client: FlaskClient, no_rate_limits: None, taken: bool
) -> None:
    """The account counter of the sign-in throttle is shared by a username and its email
    address. For a sign-up never confirmed (which cannot sign in), that let a prober sign up
    with a username of their own and the address to test, spend the username's free
    attempts, and try the address: a 429 said the address had been free."""
    if taken:
        UserFactory(username="owner", email=TARGET)
    assert _register(client)[0] == 302
    for _ in range(app.config["LOGIN_THROTTLE_ACCOUNT_FREE"] + 1):
        sign_in(client, "probe-one", "wrong password entirely")
    assert sign_in(client, TARGET, "wrong password entirely").status_code == 200


def _emailed_link_pages(client: FlaskClient, outbox: Outbox) -> list[str]:
    """A live reset link, confirmation link and email-change link, and a dead one."""
    _register(client, username="newbie", email="newbie@example.org")
    sign_in(client, "alice")
    post_form(client, "/account", {"email": "alice@new.example"}, action="/account/email")
    post_form(client, "/auth/reset", {"email": "alice@example.org"})  # after: a change ends it
    return [
        outbox.link("alice@example.org", "/auth/reset/"),
        outbox.link("newbie@example.org", "/auth/confirm/"),
        outbox.link("alice@new.example", "/account/email/"),
        "/auth/reset/not-a-live-token",
    ]


@pytest.mark.asvs("V3.4.5")
def test_pages_whose_address_holds_an_emailed_secret_send_no_referrer(
    client: FlaskClient, user: User, outbox: Outbox
) -> None:
    """The policy of every other page sends the full address along to this origin: the
    page's own stylesheet and script, the links in its header and its form's redirect
    carried the live token in ``Referer`` to whatever logs requests in front of the app
    (a CDN, a proxy with the common log format), where it could be used."""
    pages = _emailed_link_pages(client, outbox)
    for path in pages:
        resp = client.get(path)
        assert resp.status_code == (404 if "not-a-live" in path else 200), path
        assert resp.headers["Referrer-Policy"] == "no-referrer", path
    refused = post_form(client, pages[0], {"password": "short", "confirm": "short"})
    assert refused.status_code == 422
    assert refused.headers["Referrer-Policy"] == "no-referrer"
    assert client.get("/").headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
