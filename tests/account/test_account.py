"""The account page: profile, email change, password change, sessions."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from bastion.extensions import db
from bastion.models import AuditEvent, User, UserSession, utcnow
from tests.factories import PASSWORD, UserFactory
from tests.support.account_fixtures import is_signed_in, sign_in
from tests.support.accounts import Outbox, link_in, post_form

COOKIE = "__Host-session"

NEW_PW = "lilac harbour quietly 2031"


def _pw_change(client: FlaskClient, current: str = PASSWORD, new: str = NEW_PW) -> Any:
    return post_form(client, "/account", {"current": current, "password": new, "confirm": new},
                     action="/account/password")


def _stale(client: FlaskClient) -> None:
    for record in db.session.scalars(select(UserSession)):
        record.reauth_at = utcnow() - timedelta(minutes=11)
    db.session.commit()


def test_account_page_lists_sessions_and_sections(client: FlaskClient, user: User) -> None:
    sign_in(client, "alice")
    page = client.get("/account")
    assert page.status_code == 200
    for text in (b"Profile", b"Email address", b"Password", b"Two-factor", b"This device",
                 b"Sign out everywhere", b"Revoke"):
        assert text in page.data
    assert page.headers["Cache-Control"] == "no-store"


def test_profile_is_plain_text_and_length_limited(client: FlaskClient, user: User) -> None:
    sign_in(client, "alice")
    post_form(client, "/account", {"display_name": "<b>Al</b>", "bio": "<script>x</script>"},
              action="/account/profile")
    db.session.refresh(user)
    assert user.display_name == "<b>Al</b>"
    page = client.get("/account").data
    assert b"<script>x</script>" not in page and b"&lt;script&gt;" in page
    resp = post_form(client, "/account", {"display_name": "x" * 81, "bio": ""},
                     action="/account/profile")
    assert resp.status_code == 422
    db.session.refresh(user)
    assert user.display_name == "<b>Al</b>"



@pytest.mark.asvs("V2.2.1")
def test_profile_form_applies_the_profile_rules(client: FlaskClient, user: User) -> None:
    """The form saves through ``profiles.services`` (shared with the API), so its rules hold
    here too: a right-to-left override in a display name is refused and nothing is saved."""
    sign_in(client, "alice")
    resp = post_form(client, "/account", {"display_name": "al\u202eice", "bio": "Hi"},
                     action="/account/profile")
    assert resp.status_code == 422
    assert b"Use letters, digits, spaces and punctuation only." in resp.data
    db.session.refresh(user)
    assert (user.display_name, user.bio) == ("", "")
    post_form(client, "/account", {"display_name": "  Alice  ", "bio": "Hi"}, action="/account/profile")
    db.session.refresh(user)
    assert (user.display_name, user.bio) == ("Alice", "Hi")
    assert db.session.scalar(db.select(AuditEvent).where(AuditEvent.event == "profile.updated"))


@pytest.mark.asvs("V6.2.2", "V6.2.3", "V7.4.3")
def test_password_change_needs_current_password_and_ends_other_sessions(
    client: FlaskClient, user: User, outbox: Outbox
) -> None:
    other = client.application.test_client()
    sign_in(other, "alice")
    sign_in(client, "alice")
    copied = client.get_cookie(COOKIE, domain="localhost")
    assert copied is not None
    wrong = _pw_change(client, current="not my password at all")
    assert wrong.status_code == 422 and b"current password is not right" in wrong.data
    assert is_signed_in(other)
    assert _pw_change(client).status_code == 302
    assert is_signed_in(client)  # this device stays, under a new session id
    assert not is_signed_in(other)  # every other session ends
    # ...and so does this device's old session: a copy of its cookie is worthless.
    thief = client.application.test_client()
    thief.set_cookie(COOKIE, copied.value, domain="localhost")
    assert not is_signed_in(thief)
    live = db.session.scalars(select(UserSession).where(UserSession.revoked_at.is_(None))).all()
    assert len(live) == 1
    assert db.session.scalar(select(AuditEvent).where(AuditEvent.event == "password.changed"))
    assert "changed" in str(outbox.to("alice@example.org")[-1]["Subject"])


@pytest.mark.asvs("V7.5.1")
def test_password_change_requires_recent_reauthentication(client: FlaskClient, user: User) -> None:
    sign_in(client, "alice")
    _stale(client)
    before = user.password_hash
    resp = _pw_change(client)
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/auth/reauth")
    db.session.refresh(user)
    assert user.password_hash == before
    resp = post_form(client, "/auth/reauth", {"password": "wrong wrong wrong"})
    assert resp.status_code == 200
    assert post_form(client, "/auth/reauth", {"password": PASSWORD}).status_code == 302
    assert _pw_change(client).status_code == 302


@pytest.mark.asvs("V7.5.1")
def test_email_change_requires_recent_reauthentication(
    client: FlaskClient, user: User, outbox: Outbox
) -> None:
    """A session cookie left open (or copied) must not be enough to move the account to
    another mailbox, from where a reset link takes it over."""
    sign_in(client, "alice")
    _stale(client)
    resp = post_form(client, "/account", {"email": "mallory@evil.example.org"},
                     action="/account/email")
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/auth/reauth")
    assert not outbox.messages()  # no link to the new address, no notice either
    db.session.refresh(user)
    assert user.email == "alice@example.org"
    assert post_form(client, "/auth/reauth", {"password": PASSWORD}).status_code == 302
    resp = post_form(client, "/account", {"email": "alice.new@example.org"},
                     action="/account/email")
    assert resp.status_code == 302 and not resp.headers["Location"].startswith("/auth/reauth")
    assert outbox.link("alice.new@example.org", "/account/email/")


@pytest.mark.asvs("V7.5.1")
def test_email_change_confirms_new_address_and_notifies_old(
    client: FlaskClient, user: User, outbox: Outbox
) -> None:
    sign_in(client, "alice")
    resp = post_form(client, "/account", {"email": "alice.new@example.org"}, action="/account/email")
    assert resp.status_code == 302
    db.session.refresh(user)
    assert user.email == "alice@example.org"  # nothing changes before confirmation
    notice = outbox.to("alice@example.org")[-1]
    assert "alice.new@example.org" in notice.get_body(preferencelist=("plain",)).get_content()
    link = outbox.link("alice.new@example.org", "/account/email/")
    assert post_form(client, link, {}).status_code == 302
    db.session.refresh(user)
    assert user.email == "alice.new@example.org"
    assert client.get(link).status_code == 404  # works once: the old address is gone
    done = outbox.to("alice@example.org")[-1]
    assert done["Subject"] == "Your email address was changed"
    assert "is now alice.new@example.org" in done.get_body(preferencelist=("plain",)).get_content()


def test_an_email_link_opened_signed_in_as_another_account_says_whose_address_changed(
    client: FlaskClient, user: User, outbox: Outbox
) -> None:
    """Opened in a browser signed in to another account, the link changed alice's address
    and that other account's page said "Your email address is changed."."""
    sign_in(client, "alice")
    post_form(client, "/account", {"email": "alice.new@example.org"}, action="/account/email")
    link = outbox.link("alice.new@example.org", "/account/email/")
    UserFactory(username="bob", email="bob@example.org")
    other = client.application.test_client()
    sign_in(other, "bob")
    done = post_form(other, link, {})
    assert done.status_code == 302 and done.headers["Location"] == "/"
    page = other.get("/").get_data(as_text=True)
    assert "You are still signed in as bob, whose address stays as it was." in page
    assert "Your email address is changed." not in page
    db.session.refresh(user)
    assert user.email == "alice.new@example.org"


def test_the_mail_to_the_new_address_and_its_page_name_the_account(
    client: FlaskClient, user: User, smtp_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whoever gets a link they did not ask for can tell it is for an account not theirs:
    the mail, and the page the link opens (to anyone, signed in or not), name it."""
    monkeypatch.setitem(client.application.config, "MAIL_URL", smtp_server.url)
    sign_in(client, "alice")
    post_form(client, "/account", {"email": "stranger@example.org"}, action="/account/email")
    msg = smtp_server.mailbox.last_to("stranger@example.org")
    for part in ("plain", "html"):
        body = msg.get_body(preferencelist=(part,))
        assert body is not None and "the Bastion account alice" in body.get_content(), part
    link = link_in([msg], "/account/email/")
    visitor = client.application.test_client()
    assert "the email address of the account <strong>alice</strong>" in visitor.get(link).get_data(as_text=True)
    UserFactory(username="bob", email="bob@example.org")
    other = client.application.test_client()
    sign_in(other, "bob")
    page = other.get(link).get_data(as_text=True)
    assert "You are signed in as bob: confirming changes the address of alice" in page
    db.session.refresh(user)
    assert user.email == "alice@example.org"  # looking changes nothing


@pytest.mark.asvs("V1.1.1", "V2.2.1")
def test_a_new_email_is_judged_as_it_will_be_stored(
    client: FlaskClient, user: User, outbox: Outbox
) -> None:
    """U+FDFA (written as an escape) is one character and 18 after NFKC: the link went out
    and confirming it stored 360 characters in a 254-character column (a 500 on PostgreSQL)."""
    sign_in(client, "alice")
    resp = post_form(client, "/account", {"email": "\ufdfa" * 20 + "@example.org"},
                     action="/account/email")
    assert resp.status_code == 422
    assert len(outbox.messages()) == 0
    db.session.refresh(user)
    assert user.email == "alice@example.org"


@pytest.mark.asvs("V6.4.1", "V7.4.1")
@pytest.mark.parametrize("owner_acts", ["password_change", "sign_out_everywhere"])
def test_an_email_change_from_a_stolen_session_dies_when_the_owner_reacts(
    client: FlaskClient, user: User, outbox: Outbox, owner_acts: str
) -> None:
    """A thief with a fresh session asks to move the account to their address. The owner
    reads the notice and changes the password or signs out everywhere: the link the thief
    holds must be dead, or confirming it (no session needed) and a reset take the account."""
    thief = client.application.test_client()
    sign_in(thief, "alice")
    post_form(thief, "/account", {"email": "mallory@evil.example.org"}, action="/account/email")
    link = outbox.link("mallory@evil.example.org", "/account/email/")
    sign_in(client, "alice")
    if owner_acts == "password_change":
        assert _pw_change(client).status_code == 302
    else:
        post_form(client, "/account", {}, action="/account/sessions/revoke-all")
    assert not is_signed_in(thief)
    assert client.application.test_client().get(link).status_code == 404
    db.session.refresh(user)
    assert user.email == "alice@example.org"


@pytest.mark.asvs("V6.4.1")
def test_a_reset_link_mailed_to_an_old_address_dies_with_the_change(
    client: FlaskClient, user: User, outbox: Outbox
) -> None:
    """People move address because the old mailbox is lost or shared."""
    post_form(client, "/auth/reset", {"email": "alice@example.org"})
    reset = outbox.link("alice@example.org", "/auth/reset/")
    sign_in(client, "alice")
    post_form(client, "/account", {"email": "alice2@example.org"}, action="/account/email")
    assert post_form(client, outbox.link("alice2@example.org", "/account/email/"), {}).status_code == 302
    assert client.application.test_client().get(reset).status_code == 404


def test_the_old_address_hears_of_a_change_whether_or_not_the_new_one_is_taken(
    client: FlaskClient, user: User, outbox: Outbox
) -> None:
    """Otherwise one's own inbox would say which addresses have accounts."""
    UserFactory(username="bob", email="bob@example.org")
    sign_in(client, "alice")
    for address in ("bob@example.org", "nobody-yet@example.org"):
        before = len(outbox.to("alice@example.org"))
        post_form(client, "/account", {"email": address}, action="/account/email")
        assert len(outbox.to("alice@example.org")) == before + 1
    assert not outbox.to("bob@example.org")  # the taken address gets no link


@pytest.mark.asvs("V7.4.1", "V7.4.2")
def test_revoke_one_session_and_sign_out_everywhere(client: FlaskClient, user: User) -> None:
    phone = client.application.test_client()
    sign_in(phone, "alice")
    sign_in(client, "alice")
    sessions = list(db.session.scalars(select(UserSession).order_by(UserSession.id)))
    assert len(sessions) == 2
    phone_cookie = phone.get_cookie("__Host-session", domain="localhost").value
    post_form(client, "/account", {}, action=f"/account/sessions/{sessions[0].id}/revoke")
    assert not is_signed_in(phone) and is_signed_in(client)
    replay = client.application.test_client()
    replay.set_cookie("__Host-session", phone_cookie, domain="localhost")
    assert not is_signed_in(replay)
    sign_in(phone, "alice")
    resp = post_form(client, "/account", {}, action="/account/sessions/revoke-all")
    assert resp.headers["Location"] == "/auth/login"
    assert not is_signed_in(client) and not is_signed_in(phone)


@pytest.mark.asvs("V8.2.2")
def test_cannot_revoke_someone_elses_session(client: FlaskClient, user: User) -> None:
    from tests.factories import UserFactory

    UserFactory(username="bob", email="bob@example.org")
    bob = client.application.test_client()
    sign_in(bob, "bob")
    bob_session = db.session.scalar(select(UserSession))
    sign_in(client, "alice")
    post_form(client, "/account", {}, action=f"/account/sessions/{bob_session.id}/revoke")
    assert is_signed_in(bob)


@pytest.mark.asvs("V7.2.4")
def test_reauthentication_rotates_the_session(client: FlaskClient, user: User) -> None:
    sign_in(client, "alice")
    before = client.get_cookie("__Host-session", domain="localhost").value
    assert post_form(client, "/auth/reauth", {"password": PASSWORD}).status_code == 302
    assert is_signed_in(client)
    assert client.get_cookie("__Host-session", domain="localhost").value != before
    copy = client.application.test_client()
    copy.set_cookie("__Host-session", before, domain="localhost")
    assert not is_signed_in(copy)


@pytest.mark.asvs("V7.5.2")
def test_ending_sessions_needs_a_recent_factor(client: FlaskClient, user: User) -> None:
    phone = client.application.test_client()
    phone.environ_base["HTTP_USER_AGENT"] = "alice-phone/1.0"
    sign_in(phone, "alice")
    sign_in(client, "alice")
    phone_session = db.session.scalar(
        select(UserSession).where(UserSession.user_agent == "alice-phone/1.0"))
    assert phone_session is not None
    # The account page lists every live session, each with its own way to end it.
    page = client.get("/account").get_data(as_text=True)
    assert "alice-phone/1.0" in page
    assert f'action="/account/sessions/{phone_session.id}/revoke"' in page
    _stale(client)
    # Ending one session or all of them asks for the password again first.
    for action in (f"/account/sessions/{phone_session.id}/revoke", "/account/sessions/revoke-all"):
        resp = post_form(client, "/account", {}, action=action)
        assert resp.status_code == 302 and resp.headers["Location"].startswith("/auth/reauth")
        assert is_signed_in(phone) and is_signed_in(client)
    # Re-confirmed, the owner ends the one session.
    assert post_form(client, "/auth/reauth", {"password": PASSWORD}).status_code == 302
    post_form(client, "/account", {}, action=f"/account/sessions/{phone_session.id}/revoke")
    assert not is_signed_in(phone) and is_signed_in(client)


@pytest.mark.asvs("V6.2.6", "V6.2.7")
@pytest.mark.parametrize("path", ["/auth/login", "/auth/register", "/auth/reauth", "/account"])
def test_password_inputs_are_masked_and_pasteable(client: FlaskClient, user: User,
                                                  path: str) -> None:
    if path.startswith(("/account", "/auth/reauth")):
        sign_in(client, "alice")
    html = client.get(path).get_data(as_text=True)
    inputs = re.findall(r'<input[^>]*name="(?:password|confirm|current)"[^>]*>', html)
    assert inputs
    for tag in inputs:
        assert 'type="password"' in tag
        assert "onpaste" not in tag
        assert 'autocomplete="off"' not in tag  # password managers stay welcome


@pytest.mark.parametrize(
    "session_id", ["2147483647", "0", "007", "2147483648", "99999999999999999999999"]
)
def test_revoking_unknown_session_ids_is_a_clean_message(client: FlaskClient, user: User,
                                                         session_id: str) -> None:
    sign_in(client, "alice")
    resp = post_form(client, "/account", {}, action=f"/account/sessions/{session_id}/revoke")
    if int(session_id) > 2**31 - 1:  # no id that large can exist: the site-wide 404
        assert resp.status_code == 404 and b"There is nothing with that id." in resp.data
    elif session_id != str(int(session_id)) or session_id == "0":
        assert resp.status_code == 404  # not an id's spelling (ids start at 1): the router's
    else:
        assert resp.status_code == 302
        assert b"not found" in client.get("/account").data
    assert is_signed_in(client)


@pytest.mark.asvs("V2.3.3", "V7.5.1")
@pytest.mark.parametrize("holder_confirms_first", [False, True])
def test_an_address_held_by_a_never_confirmed_account_can_still_be_moved_to(
    client: FlaskClient, user: User, outbox: Outbox, holder_confirms_first: bool
) -> None:
    """Someone signs up with Alice's second address and never confirms: the address was
    'taken', so her email change to it mailed no link and never could. Opening the link
    proves she reads that mailbox; the unconfirmed account (which cannot sign in and owns
    nothing) gives the address up. One that confirmed meanwhile keeps it."""
    squatter = UserFactory(username="squatter", email="alice.work@example.org",
                           email_confirmed_at=None)
    squatter_id = squatter.id
    sign_in(client, "alice")
    post_form(client, "/account", {"email": "alice.work@example.org"}, action="/account/email")
    link = outbox.link("alice.work@example.org", "/account/email/")
    if holder_confirms_first:
        squatter.email_confirmed_at = utcnow()
        db.session.commit()

    resp = post_form(client, link, {})
    db.session.expire_all()
    if holder_confirms_first:
        assert resp.status_code == 302 and resp.headers["Location"] == "/"  # "now used by another"
        assert db.session.get(User, user.id).email == "alice@example.org"  # type: ignore[union-attr]
        assert db.session.get(User, squatter_id) is not None
        return
    assert resp.status_code == 302
    assert db.session.get(User, user.id).email == "alice.work@example.org"  # type: ignore[union-attr]
    assert db.session.get(User, squatter_id) is None
    event = db.session.scalar(select(AuditEvent).where(
        AuditEvent.event == "account.unconfirmed_released"))
    assert event is not None and (event.actor_id, event.target_user_id) == (user.id, squatter_id)


@pytest.mark.asvs("V1.1.1", "V7.5.1")
@pytest.mark.parametrize("typed", ["bob@bücher.example", "BOB@XN--BCHER-KVA.EXAMPLE"])
def test_an_email_change_to_another_spelling_of_a_taken_address_is_refused_as_today(
    client: FlaskClient, user: User, outbox: Outbox, typed: str
) -> None:
    """The same answer and the same notice as for any taken address, and no link: the
    other spelling of Bob's mailbox would otherwise have become a second account's."""
    UserFactory(username="bob", email="bob@xn--bcher-kva.example")
    sign_in(client, "alice")
    resp = post_form(client, "/account", {"email": typed}, action="/account/email")
    assert resp.status_code == 302
    assert len(outbox.to("alice@example.org")) == 1  # the notice, as for a free address
    assert not outbox.to("bob@xn--bcher-kva.example") and not outbox.to(typed)
    db.session.refresh(user)
    assert user.email == "alice@example.org"


def test_an_address_left_in_an_old_spelling_is_taken_in_every_spelling(
    client: FlaskClient, user: User, outbox: Outbox
) -> None:
    """An account migration 0010 left in its Unicode spelling still holds its mailbox."""
    UserFactory(username="bob", email="bob@bücher.example")  # stored as given
    sign_in(client, "alice")
    post_form(client, "/account", {"email": "bob@xn--bcher-kva.example"}, action="/account/email")
    assert not outbox.to("bob@xn--bcher-kva.example") and not outbox.to("bob@bücher.example")


@pytest.mark.asvs("V1.1.1")
def test_an_idn_address_is_stored_in_one_spelling_and_is_no_change_in_another(
    client: FlaskClient, user: User, outbox: Outbox
) -> None:
    sign_in(client, "alice")
    post_form(client, "/account", {"email": "Alice@Bücher.example"}, action="/account/email")
    link = outbox.link("alice@xn--bcher-kva.example", "/account/email/")
    assert post_form(client, link, {}).status_code == 302
    db.session.refresh(user)
    assert user.email == "alice@xn--bcher-kva.example"
    same = post_form(client, "/account", {"email": "alice@BÜCHER.example"}, action="/account/email")
    assert same.status_code == 422
    assert "That is already your email address." in same.get_data(as_text=True)


@pytest.mark.asvs("V2.2.1")
def test_an_email_change_to_an_invalid_idn_domain_is_a_form_error(
    client: FlaskClient, user: User, outbox: Outbox
) -> None:
    sign_in(client, "alice")
    resp = post_form(client, "/account", {"email": "alice@xn--zz.example"},
                     action="/account/email")
    assert resp.status_code == 422
    assert "Enter a valid email address." in resp.get_data(as_text=True)
    assert not outbox.messages()


def test_a_link_mailed_before_domains_were_converted_stores_the_ace_form(
    client: FlaskClient, user: User
) -> None:
    """A confirmation link carries the new address as it was then stored: Unicode."""
    from bastion.auth import links

    with client.application.test_request_context():
        token = links.make_token("email_change", user, new="alice@bücher.example")
    assert post_form(client, f"/account/email/{token}", {}).status_code == 302
    db.session.refresh(user)
    assert user.email == "alice@xn--bcher-kva.example"


def test_an_address_kept_in_an_old_spelling_is_no_change_in_the_new_one(
    client: FlaskClient, outbox: Outbox
) -> None:
    """An account migration 0010 left in its Unicode spelling asks for its own mailbox."""
    UserFactory(username="olga", email="olga@bücher.example")  # stored as given
    sign_in(client, "olga")
    resp = post_form(client, "/account", {"email": "olga@xn--bcher-kva.example"},
                     action="/account/email")
    assert resp.status_code == 422
    assert "That is already your email address." in resp.get_data(as_text=True)
    assert not outbox.messages()


@pytest.mark.asvs("V7.5.1")
def test_a_never_confirmed_account_in_an_old_spelling_gives_the_address_up(
    client: FlaskClient, user: User, outbox: Outbox
) -> None:
    """As for any never-confirmed holder (above), whichever spelling it was stored in."""
    squatter = UserFactory(username="squatter", email="alice.work@bücher.example",
                           email_confirmed_at=None)  # stored as given
    squatter_id = squatter.id
    sign_in(client, "alice")
    post_form(client, "/account", {"email": "alice.work@bücher.example"}, action="/account/email")
    link = outbox.link("alice.work@xn--bcher-kva.example", "/account/email/")
    assert post_form(client, link, {}).status_code == 302
    db.session.expire_all()
    assert db.session.get(User, user.id).email == "alice.work@xn--bcher-kva.example"  # type: ignore[union-attr]
    assert db.session.get(User, squatter_id) is None
