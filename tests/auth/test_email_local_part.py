"""RFC 5321 limits the part of an address before the '@' to 64 octets.

email-validator counts it only in strict mode (and in characters), and the forms used its
defaults: a 65-character local part was stored, and every mail to the account
(confirmation, reset, notices) could be refused by the relay, unknown to its owner.
"""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from bastion.extensions import db
from bastion.models import User
from bastion.setup.services import issue_setup_token
from tests.factories import UserFactory
from tests.support.account_fixtures import sign_in
from tests.support.accounts import Outbox, post_form, user_count

PASSWORD = "violet tractor morning 88"
NEW = {"username": "newbie", "password": PASSWORD, "confirm": PASSWORD}
TOO_LONG = [
    "a" * 65 + "@example.org",
    "\u00e9" * 33 + "@example.org",  # 33 characters, 66 octets in UTF-8
    # Full-width letters: 65 characters as typed and as stored (NFKC makes them ASCII).
    "\uff41" * 65 + "@example.org",
]
LONGEST = ["a" * 64 + "@example.org", "\u00e9" * 32 + "@example.org"]


@pytest.mark.asvs("V2.2.1", "V2.2.2")
@pytest.mark.parametrize("email", TOO_LONG)
def test_registration_refuses_a_local_part_over_64_octets(
    client: FlaskClient, outbox: Outbox, email: str
) -> None:
    resp = post_form(client, "/auth/register", {**NEW, "email": email})
    assert resp.status_code == 422
    assert "The part before the @ is too long" in resp.get_data(as_text=True)
    assert user_count() == 0 and not outbox.messages()


@pytest.mark.asvs("V2.2.1")
@pytest.mark.parametrize("email", LONGEST)
def test_registration_takes_a_local_part_of_exactly_64_octets(
    client: FlaskClient, outbox: Outbox, email: str
) -> None:
    assert post_form(client, "/auth/register", {**NEW, "email": email}).status_code == 302
    assert db.session.scalar(select(User.email)) == email


@pytest.mark.asvs("V2.2.1", "V2.2.2")
def test_an_email_change_refuses_a_local_part_over_64_octets(
    client: FlaskClient, outbox: Outbox
) -> None:
    user = UserFactory(username="alice", email="alice@example.org")
    sign_in(client, "alice")
    resp = post_form(client, "/account", {"email": TOO_LONG[0]}, action="/account/email")
    assert resp.status_code == 422
    page = resp.get_data(as_text=True)
    assert "The part before the @ is too long" in page
    assert TOO_LONG[0] in page  # what was typed stays in the field, to be shortened
    db.session.refresh(user)
    assert user.email == "alice@example.org" and not outbox.messages()


@pytest.mark.asvs("V2.2.1", "V2.2.2")
def test_the_setup_page_refuses_a_local_part_over_64_octets(
    app: Flask, client: FlaskClient
) -> None:
    path = f"/setup/{issue_setup_token()}"
    post_form(client, path, {})  # the token stays usable after a refused form
    resp = post_form(client, path, {"username": "root-admin", "email": TOO_LONG[0],
                                    "password": "granite orchard lantern 1987",
                                    "confirm": "granite orchard lantern 1987"})
    assert resp.status_code == 422
    assert "The part before the @ is too long" in resp.get_data(as_text=True)
    assert user_count() == 0


@pytest.mark.asvs("V2.2.1")
def test_an_account_holding_a_longer_local_part_can_still_reset_its_password(
    client: FlaskClient, outbox: Outbox
) -> None:
    """Accounts started before the rule keep their address: the reset form only looks an
    account up, so it must still find them."""
    UserFactory(username="legacy", email=TOO_LONG[0])
    resp = post_form(client, "/auth/reset", {"email": TOO_LONG[0]})
    assert resp.status_code == 302
    assert outbox.link(TOO_LONG[0], "/auth/reset/")
