"""The flows that send mail, seen by someone probing for accounts or flooding a mailbox:
what a reply costs with and without an account behind the address, and how many messages
one client can have sent to a mailbox it does not own."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Flask, template_rendered
from flask.testing import FlaskClient

from bastion.auth import mail_budget
from tests.factories import UserFactory
from tests.support.account_fixtures import sign_in
from tests.support.accounts import Outbox, post_form
from tests.support.mail import SMTPServer

PW = "lilac harbour quietly 2031"
# What lands in victim@example.net's mailbox: the address itself or a +tag of it.
VICTIMS_MAILBOX = re.compile(r"victim(?:\+[^@]*)?@example\.net")


@contextmanager
def _mail_rendered(app: Flask) -> Iterator[list[str]]:
    """The mail templates rendered while the block runs (sent or not)."""
    names: list[str] = []

    def record(_sender: Any, template: Any, **_extra: Any) -> None:
        if str(template.name).startswith("mail/"):
            names.append(str(template.name))

    template_rendered.connect(record, app)
    try:
        yield names
    finally:
        template_rendered.disconnect(record, app)


def _client(app: Flask, address: str) -> FlaskClient:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def _reset(client: FlaskClient, email: str) -> Any:
    return post_form(client, "/auth/reset", {"email": email})


def _register(client: FlaskClient, username: str, email: str) -> Any:
    return post_form(client, "/auth/register",
                     {"username": username, "email": email, "password": PW, "confirm": PW})


def _join_new_threads(before: set[threading.Thread]) -> None:
    """Wait for the delivery threads started since ``before`` was taken."""
    for thread in set(threading.enumerate()) - before:
        thread.join(timeout=10)


# Enumeration by the work a reply does ------------------------------------------------
@pytest.mark.asvs("V6.4.3")
def test_a_reset_for_an_unknown_address_does_the_work_of_a_known_one(
    app: Flask, client: FlaskClient, user: Any, outbox: Outbox
) -> None:
    # Only the known address used to render (and hand over) a message: the reply to it took
    # measurably longer (about 10 ms of 15), which told which addresses have accounts.
    with _mail_rendered(app) as known:
        known_reply = _reset(client, "alice@example.org")
    with _mail_rendered(app) as unknown:
        unknown_reply = _reset(client, "nobody@example.org")
    assert known and sorted(known) == sorted(unknown)
    assert (known_reply.status_code, known_reply.headers["Location"]) == (
        unknown_reply.status_code, unknown_reply.headers["Location"])
    assert len(outbox.to("alice@example.org")) == 1
    assert outbox.to("nobody@example.org") == []


@pytest.mark.asvs("V7.5.1")
def test_an_email_change_to_a_taken_address_does_the_work_of_a_free_one(
    app: Flask, client: FlaskClient, user: Any, outbox: Outbox
) -> None:
    UserFactory(username="bob", email="bob@example.org")
    sign_in(client, "alice")
    with _mail_rendered(app) as free:
        post_form(client, "/account", {"email": "new@example.org"}, action="/account/email")
    with _mail_rendered(app) as taken:
        post_form(client, "/account", {"email": "bob@example.org"}, action="/account/email")
    assert sorted(free) == sorted(taken)
    assert any(name.startswith("mail/email_change.") for name in taken)
    assert len(outbox.to("new@example.org")) == 1
    assert outbox.to("bob@example.org") == []  # built, never sent


@pytest.mark.asvs("V6.4.3")
def test_a_message_held_back_never_leaves_even_from_the_background(
    app: Flask, client: FlaskClient, user: Any, outbox: Outbox
) -> None:
    app.config["MAIL_BACKGROUND"] = True
    before = set(threading.enumerate())
    try:
        _reset(client, "nobody@example.org")
        _reset(client, "alice@example.org")
        _join_new_threads(before)
    finally:
        app.config["MAIL_BACKGROUND"] = False
    assert [str(m["To"]) for m in outbox.messages()] == ["alice@example.org"]


# Mail bombing --------------------------------------------------------------------------
@pytest.mark.asvs("V2.4.1", "V2.3.2")
def test_one_client_cannot_flood_an_address_through_reset_and_sign_up(
    app: Flask, user: Any, outbox: Outbox
) -> None:
    # Every request was within the route limits, and each one mailed alice: a client
    # could have about fifty messages an hour sent to any address that has an account.
    attacker = _client(app, "198.51.100.7")
    replies = [_reset(attacker, "alice@example.org") for _ in range(5)]
    replies += [_register(attacker, f"mallory{n}", "alice@example.org") for n in range(2)]
    assert len(outbox.to("alice@example.org")) == 3
    # The replies did not change when the mail stopped: nothing tells the client.
    assert [r.status_code for r in replies] == [302] * 7
    assert {r.headers["Location"] for r in replies} == {"/auth/login"}
    assert b"Check your email" in attacker.get("/auth/login").data


@pytest.mark.asvs("V2.4.1", "V2.3.2")
def test_one_signed_in_client_cannot_flood_an_address_through_email_change(
    app: Flask, client: FlaskClient, user: Any, outbox: Outbox
) -> None:
    sign_in(client, "alice")
    for _ in range(5):
        resp = post_form(client, "/account", {"email": "victim@example.net"},
                         action="/account/email")
        assert resp.status_code == 302
    assert len(outbox.to("victim@example.net")) == 3
    assert len(outbox.to("alice@example.org")) == 5  # the owner hears of every request


@pytest.mark.asvs("V2.4.1", "V2.3.2")
def test_sub_addresses_of_one_mailbox_share_its_budget(
    app: Flask, user: Any, smtp_server: SMTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # victim+1@, victim+2@, ... all land in victim@'s mailbox, and each had a budget of its
    # own: every sign-up mailed its address a confirmation, every reset a link and every
    # email change a link, eight messages here where the budget allows three.
    monkeypatch.setitem(app.config, "MAIL_URL", smtp_server.url)
    attacker = _client(app, "198.51.100.7")
    tagged = ["victim+1@example.net", "victim+2@example.net", "victim+3@example.net",
              "victim+4@EXAMPLE.NET"]
    replies = [_register(attacker, f"mallory{n}", address) for n, address in enumerate(tagged)]
    replies += [_reset(attacker, address) for address in tagged[:3]]
    sign_in(attacker, "alice")
    replies.append(post_form(attacker, "/account", {"email": "victim+5@example.net"},
                             action="/account/email"))
    assert [r.status_code for r in replies] == [302] * 8

    def reached_victim() -> int:
        return sum(bool(VICTIMS_MAILBOX.fullmatch(str(m["To"])))
                   for m in smtp_server.mailbox.messages)

    assert reached_victim() == 3
    # Another mailbox, even one with a tag, still gets its messages from the same client.
    _register(_client(app, "198.51.100.7"), "carol", "carol+news@example.net")
    _reset(_client(app, "198.51.100.7"), "alice@example.org")
    assert len(smtp_server.mailbox.to("carol+news@example.net")) == 1
    assert [str(m["Subject"]) for m in smtp_server.mailbox.to("alice@example.org")] == [
        "Your email address is being changed", "Reset your password"]
    assert reached_victim() == 3


@pytest.mark.asvs("V2.4.1", "V2.3.2")
def test_gmail_spellings_of_one_mailbox_share_its_budget(
    app: Flask, smtp_server: SMTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(app.config, "MAIL_URL", smtp_server.url)
    attacker = _client(app, "198.51.100.7")
    spellings = ["vic.tim@gmail.com", "v.ictim@gmail.com", "victim@googlemail.com",
                 "vi.c.tim@gmail.com", "vict.im@gmail.com"]
    replies = [_register(attacker, f"mallory{n}", address) for n, address in enumerate(spellings)]
    assert [r.status_code for r in replies] == [302] * 5
    reached = [str(m["To"]) for m in smtp_server.mailbox.messages
               if mail_budget.mailbox(str(m["To"])) == "victim@gmail.com"]
    assert len(reached) == 3, reached


@pytest.mark.asvs("V2.4.1")
@pytest.mark.parametrize(("address", "mailbox"), [
    ("Victim+News@Example.NET", "victim@example.net"),
    ("victim+a+b@example.net", "victim@example.net"),
    ("victim+@bücher.example", "victim@xn--bcher-kva.example"),
    # Gmail's own rule, which Google documents: dots do not count, googlemail.com is gmail.com.
    ("Vic.Tim@gmail.com", "victim@gmail.com"),
    ("v.i.c.t.i.m+news@googlemail.com", "victim@gmail.com"),
    ("victim@gmail.com", "victim@gmail.com"),
    ("+news@gmail.com", "+news@gmail.com"),
    # Other providers' rules are not guessed: these may be other people's mailboxes.
    ("vic.tim@example.net", "vic.tim@example.net"),
    ("vic.tim@mail.gmail.com", "vic.tim@mail.gmail.com"),
    ("victim-news@example.net", "victim-news@example.net"),
    ("+news@example.net", "+news@example.net"),  # no mailbox before the tag
])
def test_the_budget_counts_the_mailbox_without_its_tag(address: str, mailbox: str) -> None:
    assert mail_budget.mailbox(address) == mailbox


@pytest.mark.asvs("V2.4.1")
def test_a_client_that_spent_the_budget_cannot_keep_the_owner_from_a_reset(
    app: Flask, user: Any, outbox: Outbox
) -> None:
    attacker = _client(app, "198.51.100.7")
    for _ in range(5):
        _reset(attacker, "alice@example.org")
    sent = len(outbox.to("alice@example.org"))
    _reset(_client(app, "203.0.113.9"), "alice@example.org")
    assert len(outbox.to("alice@example.org")) == sent + 1


@pytest.mark.asvs("V2.4.1", "V6.4.1")
def test_a_spent_budget_never_holds_back_a_new_accounts_confirmation(
    app: Flask, outbox: Outbox
) -> None:
    client = _client(app, "198.51.100.7")
    for _ in range(4):  # unknown address: nothing sent, the budget spent all the same
        _reset(client, "carol@example.org")
    assert _register(client, "carol", "carol@example.org").status_code == 302
    assert outbox.link("carol@example.org", "/auth/confirm/")


@pytest.mark.asvs("V2.4.1", "V2.3.2")
def test_many_clients_together_cannot_flood_a_mailbox(
    app: Flask, user: Any, outbox: Outbox
) -> None:
    # Each client stayed within its own budget, and each had alice mailed: clients enough
    # (a botnet, the /64s of one /48) had as many messages sent to her as they liked.
    resets = [_reset(_client(app, f"198.51.100.{n}"), "alice@example.org") for n in range(1, 9)]
    sign_ups = [_register(_client(app, f"203.0.113.{n}"), f"mallory{n}", "alice@example.org")
                for n in range(1, 14)]
    assert {(r.status_code, r.headers["Location"]) for r in resets + sign_ups} == {
        (302, "/auth/login")}
    subjects = [str(m["Subject"]) for m in outbox.to("alice@example.org")]
    assert subjects.count("Reset your password") == mail_budget.RESET_LINKS_PER_ADDRESS
    assert subjects.count("Someone tried to register with your email") == 10
    # Her own request now sends nothing either, but the links already mailed are live:
    # whoever reads the mailbox can still choose a new password.
    _reset(_client(app, "192.0.2.1"), "alice@example.org")
    assert len(outbox.to("alice@example.org")) == len(subjects)
    link = outbox.link("alice@example.org", "/auth/reset/")
    assert b"Choose a new password" in app.test_client().get(link).data
