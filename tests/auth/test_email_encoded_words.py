"""An address is mailed as it is stored, never as an encoded word decodes it.

RFC 2047 forbids encoded words (``=?charset?q?...?=``) inside an address, but email-validator
accepts one as a local part (``=`` and ``?`` are ordinary characters there) and Python's
mail header parser decodes it: an account stored as ``=?utf-8?q?victim?=@example.org`` was
mailed at ``victim@example.org``, a mailbox another account may hold (the unique address and
the notice to its owner sidestepped), and ``=?utf-8?q?a=3E=2C_b=40evil.test...?=`` wrote a
``To:`` header naming a recipient that is not the account's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient

from bastion.extensions import db
from tests.factories import UserFactory
from tests.support.account_fixtures import sign_in
from tests.support.accounts import Outbox, post_form, user_count
from tests.support.auth import csrf_token
from tests.support.mail import SMTPServer

PASSWORD = "violet tractor morning 88"
NEW = {"username": "newbie", "password": PASSWORD, "confirm": PASSWORD}
REFUSAL = "mail software decodes"
ENCODED = [
    "=?utf-8?q?victim?=@example.org",  # mailed at victim@example.org
    "=?utf-8?b?dmljdGlt?=@example.org",  # the same in base64
    "=?utf-8?q?a=3E=2C_b=40evil.test=2C_=3Cc?=@example.org",  # To: a>, b@evil.test, <c@...
    "first.=?x?q?victim?=@example.org",  # one atom of several, for parsers that decode it
]


@pytest.mark.asvs("V2.2.1", "V6.4.1")
@pytest.mark.parametrize("email", ENCODED)
def test_registration_refuses_an_encoded_word_in_the_address(
    client: FlaskClient, outbox: Outbox, email: str
) -> None:
    UserFactory(username="victim", email="victim@example.org")
    resp = post_form(client, "/auth/register", {**NEW, "email": email})
    assert resp.status_code == 422
    assert REFUSAL in resp.get_data(as_text=True)
    assert user_count() == 1 and not outbox.messages()


@pytest.mark.asvs("V2.2.1")
def test_an_email_change_refuses_an_encoded_word_in_the_address(
    client: FlaskClient, outbox: Outbox
) -> None:
    user = UserFactory(username="alice", email="alice@example.org")
    sign_in(client, "alice")
    resp = post_form(client, "/account", {"email": ENCODED[0]}, action="/account/email")
    assert resp.status_code == 422
    assert REFUSAL in resp.get_data(as_text=True)
    db.session.refresh(user)
    assert user.email == "alice@example.org" and not outbox.messages()


@pytest.mark.asvs("V2.2.1")
def test_create_admin_refuses_an_encoded_word_in_the_address(app: Flask) -> None:
    result = app.test_cli_runner().invoke(
        args=[
            "create-admin",
            "--username",
            "ops",
            "--email",
            ENCODED[0],
            "--password-stdin",
        ],
        input="an operator passphrase\n",
    )
    assert result.exit_code != 0 and REFUSAL in result.output
    assert user_count() == 0


@pytest.mark.asvs("V6.4.3")
def test_a_stored_address_that_would_be_read_as_another_gets_no_mail(
    make_app: Callable[..., Flask], smtp_server: SMTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    """An account stored before the rule keeps its address, but nothing is mailed to the
    mailbox its encoded word names; the reply is the one every reset request gets."""
    app = make_app(MAIL_URL=smtp_server.url)
    client = app.test_client()
    with app.app_context():
        UserFactory(username="legacy", email=ENCODED[0])
        UserFactory(username="plain", email="plain@example.org")
    caplog.set_level(logging.ERROR, logger="bastion.mail")
    for email in (ENCODED[0], "plain@example.org"):
        token = csrf_token(client, "/auth/reset")
        resp = client.post("/auth/reset", data={"csrf_token": token, "email": email})
        assert resp.status_code == 302
    assert [str(m["To"]) for m in smtp_server.mailbox.messages] == ["plain@example.org"]
    assert any(getattr(r, "template", "") == "reset" for r in caplog.records)
