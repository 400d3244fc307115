"""Registration and email confirmation."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from bastion.extensions import db
from bastion.models import User, utcnow
from tests.factories import PASSWORD
from tests.support.account_fixtures import is_signed_in, sign_in
from tests.support.accounts import Outbox, full_width, post_form, user_count

NEW = {"username": "newbie", "email": "newbie@example.org",
       "password": "violet tractor morning 88", "confirm": "violet tractor morning 88"}


@pytest.mark.asvs("V6.4.1", "V6.2.1")
def test_register_confirm_then_sign_in(client: FlaskClient, outbox: Outbox) -> None:
    resp = post_form(client, "/auth/register", NEW)
    assert resp.status_code == 302
    # Unconfirmed: the generic failure, not signed in.
    sign_in(client, "newbie", NEW["password"])
    assert not is_signed_in(client)
    link = outbox.link("newbie@example.org", "/auth/confirm/")
    msg = outbox.to("newbie@example.org")[-1]
    assert msg.get_body(preferencelist=("html",)) is not None  # plain text + HTML
    page = client.get(link)
    assert page.status_code == 200 and b"Confirm my email" in page.data
    assert db.session.scalar(select(User.email_confirmed_at).where(User.username == "newbie")) is None
    assert post_form(client, link, {}).status_code == 302
    sign_in(client, "newbie", NEW["password"])
    assert is_signed_in(client)


def test_registering_a_taken_email_answers_the_same_and_notifies_owner(
    client: FlaskClient, outbox: Outbox, user: User
) -> None:
    resp = post_form(client, "/auth/register", {**NEW, "email": "ALICE@example.org"})
    fresh = post_form(client, "/auth/register", {**NEW, "username": "other1", "email": "o@example.org"})
    assert resp.status_code == fresh.status_code == 302
    assert client.get(resp.headers["Location"]).data.count(b"Check your email") == 1
    assert user_count() == 2  # alice and other1; no second account for alice's address
    notice = outbox.to("alice@example.org")[-1]
    assert "tried to register" in str(notice["Subject"])


@pytest.mark.asvs("V6.4.1")
def test_confirmation_link_is_refused_when_forged_or_after_email_change(
    client: FlaskClient, outbox: Outbox
) -> None:
    post_form(client, "/auth/register", NEW)
    link = outbox.link("newbie@example.org", "/auth/confirm/")
    assert client.get(link + "x").status_code == 404
    assert client.get("/auth/confirm/" + "A" * 600).status_code == 404
    user = db.session.scalar(select(User).where(User.username == "newbie"))
    user.email = "changed@example.org"
    db.session.commit()
    assert client.get(link).status_code == 404


@pytest.mark.asvs("V6.2.1", "V6.2.4", "V6.2.11", "V6.2.12")
@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("password", "short pass", b"at least 12"),
        ("password", "x" * 129, b"at most 128"),
        ("password", "password123456", b"too common"),
        ("password", "qwertyuiopasdf", b"too common"),
        ("password", "newbie is my name!", b"must not contain your username"),
        # In the words of the hint above it, not WTForms' "Field must be between 3 and 32
        # characters long."
        ("username", "a", b"Use 3 to 32 characters."),
        ("username", "bad name!", b"Use 3 to 32 letters"),
        ("email", "not-an-email", b"valid email"),
    ],
)
def test_registration_rules_are_form_errors(
    client: FlaskClient, field: str, value: str, message: bytes
) -> None:
    data = {**NEW, field: value}
    if field == "password":
        data["confirm"] = value
    resp = post_form(client, "/auth/register", data)
    assert resp.status_code == 422
    assert message in resp.data
    assert user_count() == 0


@pytest.mark.asvs("V6.2.1")
def test_a_badly_formed_username_is_named_with_the_other_errors(client: FlaskClient) -> None:
    """It was checked only by the service, after the form: with a bad email and a short
    password, "carol smith" was refused only once those were put right."""
    from bastion.auth.services import username_problem

    resp = post_form(client, "/auth/register", {
        "username": "carol smith", "email": "not-an-email",
        "password": "short", "confirm": "short",
    })
    page = resp.get_data(as_text=True)
    assert resp.status_code == 422
    problem = username_problem("carol smith")
    assert problem and page.count(problem.replace("'", "&#39;")) == 1
    assert "valid email" in page
    assert page.count("at least 12") == 1  # the length, once: not again as the rules say it
    assert user_count() == 0


@pytest.mark.asvs("V6.2.4")
def test_a_common_password_is_named_with_a_mistyped_repeat(client: FlaskClient) -> None:
    """Refused only on the next round, once the repeat matched."""
    resp = post_form(client, "/auth/register", {
        **NEW, "password": "password123456", "confirm": "password1234567"})
    page = resp.get_data(as_text=True)
    assert resp.status_code == 422
    assert "too common" in page and "The passwords do not match." in page
    assert user_count() == 0


@pytest.mark.asvs("V6.2.1", "V6.2.5")
def test_unicode_password_is_normalised(client: FlaskClient, outbox: Outbox) -> None:
    # "ﬁ" (U+FB01) is NFKC-equal to "fi": both spellings are one password.
    password = "ﬁne unicode pässwörd ☃"
    post_form(client, "/auth/register", {**NEW, "password": password, "confirm": password})
    post_form(client, outbox.link("newbie@example.org", "/auth/confirm/"), {})
    sign_in(client, "newbie", "fine unicode pässwörd ☃")
    assert is_signed_in(client)


def test_registration_page_shows_strength_hint(client: FlaskClient) -> None:
    page = client.get("/auth/register")
    assert b"passphrase" in page.data and b"breached" in page.data
    assert PASSWORD  # fixture password stays valid


@pytest.mark.asvs("V6.4.1", "V6.3.1")
def test_an_account_started_by_someone_else_cannot_be_confirmed_for_them(
    client: FlaskClient, outbox: Outbox
) -> None:
    """Pre-hijacking: an attacker registers with the victim's address and a password of
    their own. When the victim registers later, resending that account's confirmation link
    let the victim confirm the attacker's account. The mailbox now gets a link to choose
    the account's password instead, which also confirms the address."""
    attacker_pw = "attacker's own password 31"
    post_form(client, "/auth/register", {**NEW, "username": "vic-tim", "password": attacker_pw,
                                          "confirm": attacker_pw})
    assert post_form(client, "/auth/register", NEW).status_code == 302  # the victim
    newest = outbox.to("newbie@example.org")[-1]
    assert "Finish creating your account" in str(newest["Subject"])
    assert "/auth/confirm/" not in newest.get_body(preferencelist=("plain",)).get_content()
    assert user_count() == 1
    reset = outbox.link("newbie@example.org", "/auth/reset/")
    assert post_form(client, reset, {"password": NEW["password"],
                                     "confirm": NEW["password"]}).status_code == 302
    sign_in(client, "vic-tim", attacker_pw)
    assert not is_signed_in(client)  # the attacker's password is gone
    sign_in(client, "newbie@example.org", NEW["password"])
    assert is_signed_in(client)  # and the address is confirmed, by its owner's password


@pytest.mark.asvs("V6.4.1")
def test_a_second_sign_up_kills_the_confirmation_link_someone_else_started(
    client: FlaskClient, outbox: Outbox
) -> None:
    """Pre-hijacking, the other half: the mailbox also holds the first link, mailed when
    the attacker registered. The owner, who just signed up, clicks "Confirm your email"
    and confirms the attacker's account, password and all."""
    attacker_pw = "attacker's own password 31"
    post_form(client, "/auth/register", {**NEW, "username": "vic-tim", "password": attacker_pw,
                                          "confirm": attacker_pw})
    first = outbox.link("newbie@example.org", "/auth/confirm/")
    assert post_form(client, "/auth/register", NEW).status_code == 302  # the owner
    assert client.get(first).status_code == 404
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"',
                      client.get("/auth/login").get_data(as_text=True))
    assert token
    assert client.post(first, data={"csrf_token": token.group(1)}).status_code == 404
    sign_in(client, "vic-tim", attacker_pw)
    assert not is_signed_in(client)
    assert db.session.scalar(select(User.email_confirmed_at)) is None


@pytest.mark.parametrize("change", [
    {"password": "password123456", "confirm": "password123456"},  # a breached password
    {"username": "x"},  # too short
    {"username": "alice"},  # taken
])
def test_a_taken_email_gets_the_same_input_errors_as_a_free_one(
    client: FlaskClient, user: Any, change: dict[str, str]
) -> None:
    """The duplicate-email branch used to answer "check your email" before the other rules
    ran, so any invalid input told a taken address (302) from a free one (422)."""
    taken = post_form(client, "/auth/register", {**NEW, "email": "alice@example.org", **change})
    free = post_form(client, "/auth/register", {**NEW, "email": "free@example.org", **change})
    assert taken.status_code == free.status_code == 422


@pytest.mark.asvs("V6.2.11")
def test_the_site_name_is_a_banned_context_word(client: FlaskClient) -> None:
    pw = "my Bastion password 77"
    resp = post_form(client, "/auth/register", {**NEW, "password": pw, "confirm": pw})
    assert resp.status_code == 422 and b"name of this site" in resp.data


@pytest.mark.asvs("V6.2.11")
def test_the_email_local_part_is_a_banned_context_word(client: FlaskClient) -> None:
    pw = "Riverbank rules the valley"
    data = {**NEW, "email": "riverbank@example.org", "password": pw, "confirm": pw}
    resp = post_form(client, "/auth/register", data)
    assert resp.status_code == 422 and b"your username or email address" in resp.data
    assert user_count() == 0


# Written as escapes: U+FDFA (one character, 18 after NFKC), U+FF20 (full-width '@'),
# U+2474 (parenthesised digit one).
@pytest.mark.asvs("V1.1.1", "V1.3.11", "V2.2.1")
@pytest.mark.parametrize("email", [
    "\ufdfa" * 20 + "@example.org",
    "attacker\uff20evil.example@example.org",
    "alice\u2474@example.org",
])
def test_an_email_is_judged_as_it_will_be_stored(
    client: FlaskClient, outbox: Outbox, email: str
) -> None:
    """The validator passed these, then NFKC made them 360 characters (a 500 on
    PostgreSQL, stored as is on SQLite), two '@' (mail sent to no one) or a comment (mail
    to another mailbox than the one stored)."""
    resp = post_form(client, "/auth/register", {**NEW, "email": email})
    assert resp.status_code == 422
    assert b"valid email" in resp.data or b"between" in resp.data
    assert user_count() == 0 and not outbox.messages()


@pytest.mark.asvs("V2.2.1", "V6.4.1")
@pytest.mark.parametrize("taken", ["email", "username"])
def test_a_sign_up_that_races_another_gets_the_usual_answer_not_a_500(
    client: FlaskClient, outbox: Outbox, user: User, monkeypatch: pytest.MonkeyPatch, taken: str
) -> None:
    """Both sign-ups pass the checks before either inserts; the unique index stops the
    second, which must answer as if it had come a moment later."""
    from bastion.auth import registration, services

    def racing(real: Any, stale: int) -> Any:
        calls: list[str] = []

        def check(value: str) -> bool:
            calls.append(value)
            return False if len(calls) <= stale else bool(real(value))  # looked too early

        return check

    if taken == "email":
        monkeypatch.setattr(registration, "email_taken", lambda _email: False)
        monkeypatch.setattr(services, "email_taken", racing(services.email_taken, 1))
        form = {**NEW, "email": user.email}
    else:
        # Registration and create_user each look once before the insert.
        monkeypatch.setattr(services, "username_taken", racing(services.username_taken, 2))
        form = {**NEW, "username": user.username}
    resp = post_form(client, "/auth/register", form)
    assert user_count() == 1
    if taken == "email":  # the same answer as a free address, and the owner is told
        assert resp.status_code == 302
        assert "tried to register" in str(outbox.to(user.email)[-1]["Subject"])
    else:
        assert resp.status_code == 422
        assert "That username is taken." in resp.get_data(as_text=True)


IDN_ACE = "newbie@xn--bcher-kva.example"


@pytest.mark.asvs("V1.1.1")
@pytest.mark.parametrize(("first", "second"), [
    ("newbie@bücher.example", "NEWBIE@XN--BCHER-KVA.EXAMPLE"),
    ("newbie@xn--bcher-kva.example", full_width("newbie@bücher.example")),
])
def test_the_other_spelling_of_an_idn_domain_is_a_taken_address(
    client: FlaskClient, outbox: Outbox, first: str, second: str
) -> None:
    """``user@bücher.example`` and ``user@xn--bcher-kva.example`` are one mailbox: both
    were stored, so one person's address could hold two accounts (or a squatter's)."""
    assert post_form(client, "/auth/register", {**NEW, "email": first}).status_code == 302
    again = post_form(client, "/auth/register", {**NEW, "username": "other1", "email": second})
    assert again.status_code == 302  # the same answer as a free address, as for any taken one
    assert user_count() == 1
    assert db.session.scalar(select(User.email)) == IDN_ACE
    subjects = [str(m["Subject"]) for m in outbox.to(IDN_ACE)]
    assert subjects == ["Confirm your email address", "Finish creating your account"]


@pytest.mark.asvs("V1.1.1", "V2.2.1")
@pytest.mark.parametrize("email", [
    "newbie@xn--zz.example",  # an A-label that is not Punycode
    "newbie@1.xn--4dbc.example",  # a right-to-left label beside a digit-first one
    "newbie@b\u00fccher..example",
    # 204 characters as typed; its domain is over 253 once in ACE form, as it would be stored.
    "newbie@" + ".".join(["bücherbücherbücher"] * 10) + ".example",
])
def test_an_invalid_idn_domain_is_a_form_error(
    client: FlaskClient, outbox: Outbox, email: str
) -> None:
    resp = post_form(client, "/auth/register", {**NEW, "email": email})
    assert resp.status_code == 422
    assert b"Enter a valid email address." in resp.data
    assert user_count() == 0 and not outbox.messages()


@pytest.mark.asvs("V6.4.1")
@pytest.mark.parametrize("confirmed", [True, False], ids=["confirmed", "never confirmed"])
def test_a_sign_up_with_a_disabled_accounts_address_mails_it_nothing(
    client: FlaskClient, outbox: Outbox, confirmed: bool
) -> None:
    """A disabled account gets no mail from an anonymous request, as for a reset request:
    the notice offered a sign-in and a reset that cannot work, and the never-confirmed
    account's "choose its password" link opened the dead-link page."""
    from bastion.admin.services import set_disabled
    from tests.factories import UserFactory

    owner = UserFactory(username="owner", email=NEW["email"],
                        email_confirmed_at=utcnow() if confirmed else None)
    set_disabled(None, owner, True)
    assert post_form(client, "/auth/register", NEW).status_code == 302  # the usual answer
    assert not outbox.messages()
    assert user_count() == 1
