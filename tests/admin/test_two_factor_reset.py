"""Resetting a lost second factor: an admin, after identity proofing, audited and mailed."""

from __future__ import annotations

from typing import Any

import pyotp
import pytest
from flask import Flask
from flask.testing import FlaskClient

from bastion.admin import services as admin
from bastion.api import pats
from bastion.api.tokens import issue_pair
from bastion.auth import twofactor
from bastion.extensions import db
from bastion.models import AuditEvent, RecoveryCode, UserSession
from tests.factories import TOTP_SECRET, UserFactory
from tests.support.account_fixtures import is_signed_in, sign_in
from tests.support.accounts import Outbox, post_form, shown_totp_secret
from tests.support.auth import csrf_token
from tests.support.roles import age_reauthentication, client_for, post, stored_user

REASON = "Video call, face matched to the ID photo on file"


def _events() -> list[AuditEvent]:
    return list(db.session.scalars(db.select(AuditEvent).where(AuditEvent.event == "user.2fa_reset")))


def _url(user: Any) -> str:
    return f"/admin/users/{user.id}/2fa-reset"


def _reset(client: FlaskClient, target: Any, **data: str) -> Any:
    return post(client, _url(target), {"confirm": target.username, "reason": REASON, **data})


def _unchanged(target: Any) -> None:
    after = stored_user(target.id)
    assert after.has_2fa and after.totp_secret == target.totp_secret
    assert not _events()


@pytest.mark.asvs("V6.4.4", "V7.4.3")
def test_reset_locks_out_the_lost_device_its_sessions_and_tokens(app: Flask) -> None:
    boss = UserFactory(role_name="admin")
    # Not a role that must enrol: its pages would redirect to enrolment, session or not.
    target = UserFactory(role_name="editor", two_factor=True)
    codes = twofactor.new_recovery_codes(target)
    db.session.commit()
    lost_browser = client_for(app, target)
    pair = issue_pair(target)
    pat = pats.create(target, name="laptop", scopes=["articles:read"]).secret
    api = app.test_client()
    for bearer in (pair.access_token, pat):
        assert api.get("/api/v1/me", headers={"Authorization": f"Bearer {bearer}"}).status_code == 200
    client = client_for(app, boss)
    assert f'href="{_url(target)}"' in client.get("/admin/users").get_data(as_text=True)
    page = client.get(_url(target))
    assert page.status_code == 200 and target.username in page.get_data(as_text=True)

    resp = _reset(client, target)

    assert resp.status_code == 302 and resp.headers["Location"] == "/admin/users"
    after = stored_user(target.id)
    assert not after.has_2fa and after.totp_secret is None and after.totp_last_step is None
    assert not db.session.scalars(db.select(RecoveryCode).where(RecoveryCode.user_id == target.id)).all()
    assert not twofactor.use_recovery_code(after, codes[0])
    assert not is_signed_in(lost_browser)
    assert all(s.revoked_at for s in db.session.scalars(
        db.select(UserSession).where(UserSession.user_id == target.id)))
    for bearer in (pair.access_token, pat):
        assert api.get("/api/v1/me", headers={"Authorization": f"Bearer {bearer}"}).status_code == 401
    assert api.post("/api/v1/auth/refresh", json={"refresh_token": pair.refresh_token}).status_code == 401
    assert pats.authenticate(pat) is None
    page = client.get("/admin/users").get_data(as_text=True)
    assert f"Two-factor authentication of {target.username} is reset" in page
    assert f'href="{_url(target)}"' not in page  # nothing left to reset


@pytest.mark.asvs("V6.4.4", "V6.3.3")
@pytest.mark.parametrize(("role", "must_enrol"), [("admin", True), ("editor", False)])
def test_after_a_reset_the_password_signs_in_and_only_a_new_factor_works(
    app: Flask, role: str, must_enrol: bool
) -> None:
    target = UserFactory(role_name=role, two_factor=True)
    old_codes = twofactor.new_recovery_codes(target)
    db.session.commit()
    assert _reset(client_for(app, UserFactory(role_name="admin")), target).status_code == 302

    client = app.test_client()
    # No 2FA step any more; a role that requires the factor is led straight to enrolment.
    landing = "/account/2fa" if must_enrol else "/"
    assert sign_in(client, target.username).headers["Location"] == landing
    account = client.get("/account")
    if must_enrol:  # BASTION_REQUIRE_2FA_ROLES: nothing but enrolment until it is done
        assert account.status_code == 302
        assert account.headers["Location"] == "/account/2fa?next=/account"
    else:
        assert account.status_code == 200
    page = client.get("/account/2fa").get_data(as_text=True)
    new_secret = shown_totp_secret(page)
    assert new_secret
    assert new_secret != TOTP_SECRET
    enrolled = post_form(client, "/account/2fa", {"code": pyotp.TOTP(new_secret).now()})
    assert enrolled.status_code == 200 and stored_user(target.id).has_2fa

    # The lost authenticator and the old recovery codes are worthless at the 2FA step.
    fresh = app.test_client()
    assert sign_in(fresh, target.username).headers["Location"].startswith("/auth/2fa")
    for old in (pyotp.TOTP(TOTP_SECRET).now(), old_codes[0]):
        fresh.post("/auth/2fa", data={"code": old, "csrf_token": csrf_token(fresh, "/auth/2fa")})
        assert not is_signed_in(fresh)


@pytest.mark.asvs("V6.4.4", "V8.2.1")
@pytest.mark.parametrize("role", [None, "viewer", "editor"])
def test_only_admins_can_reset(app: Flask, role: str | None) -> None:
    target = UserFactory(role_name="editor", two_factor=True)
    client = client_for(app, UserFactory(role_name=role) if role else None)
    expected = 403 if role else 302
    for resp in (client.get(_url(target)), _reset(client, target)):
        assert resp.status_code == expected
        if not role:
            assert resp.headers["Location"].startswith("/auth/login")
    _unchanged(target)


@pytest.mark.asvs("V6.4.4", "V3.5.1")
def test_reset_needs_the_csrf_token(app: Flask) -> None:
    target = UserFactory(two_factor=True)
    client = client_for(app, UserFactory(role_name="admin"))
    resp = client.post(_url(target), data={"confirm": target.username, "reason": REASON})
    assert resp.status_code == 400
    _unchanged(target)


@pytest.mark.asvs("V6.4.4", "V7.5.1")
def test_reset_needs_a_recent_reauthentication(app: Flask) -> None:
    target = UserFactory(two_factor=True)
    boss = UserFactory(role_name="admin")
    client = client_for(app, boss)
    age_reauthentication(boss, minutes=11)
    for resp in (client.get(_url(target)), _reset(client, target)):
        assert resp.status_code == 302 and resp.headers["Location"].startswith("/auth/reauth")
    _unchanged(target)


@pytest.mark.asvs("V6.4.4")
@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"confirm": "someone-else"}, "Type the username"),
        ({"confirm": ""}, "This field is required."),
        ({"reason": ""}, "This field is required."),
        ({"reason": "ok"}, "in 10 to 500 characters"),
        ({"reason": "x" * 501}, "in 10 to 500 characters"),
        ({"reason": " \t" * 10}, "This field is required."),
        ({"reason": "  a    b    "}, "in 10 to 500 characters"),  # counted without padding
        ({"reason": "called\x00them"}, "characters that are not allowed"),
        # C1 controls and bidi overrides: the reason is mailed to the user.
        ({"reason": "called them \x9b31m back"}, "characters that are not allowed"),
        ({"reason": "called them \u202ekcab"}, "characters that are not allowed"),
        ({"reason": "called them \u2066back\u2069"}, "characters that are not allowed"),
    ],
)
def test_a_wrong_confirmation_or_reason_changes_nothing(
    app: Flask, data: dict[str, str], message: str
) -> None:
    target = UserFactory(two_factor=True)
    outbox = Outbox(app)
    client = client_for(app, UserFactory(role_name="admin"))
    resp = _reset(client, target, **data)
    assert resp.status_code == 422
    assert message in resp.get_data(as_text=True)
    _unchanged(target)
    assert is_signed_in(client) and not outbox.to(target.email)


@pytest.mark.asvs("V6.4.4")
def test_an_admin_cannot_reset_their_own_second_factor(app: Flask) -> None:
    boss = UserFactory(role_name="admin")
    UserFactory(role_name="admin")
    client = client_for(app, boss)
    assert f'href="{_url(boss)}"' not in client.get("/admin/users").get_data(as_text=True)
    for resp in (client.get(_url(boss)), _reset(client, boss)):
        assert resp.status_code == 302 and resp.headers["Location"] == "/admin/users"
    assert "You cannot reset your own two-factor authentication" in client.get(
        "/admin/users"
    ).get_data(as_text=True)
    with pytest.raises(admin.AdminError, match="your own"):
        admin.reset_two_factor(boss, boss, confirmation=boss.username, reason=REASON)
    _unchanged(boss)


def test_a_user_without_two_factor_has_nothing_to_reset(app: Flask) -> None:
    target = UserFactory()
    client = client_for(app, UserFactory(role_name="admin"))
    resp = _reset(client, target)
    assert resp.status_code == 302
    assert "has no two-factor authentication to reset" in client.get("/admin/users").get_data(
        as_text=True
    )
    assert not _events()


@pytest.mark.asvs("V6.4.4", "V16.3.3", "V16.2.1")
def test_reset_is_audited_with_the_reason_and_the_user_is_told(
    app: Flask, smtp_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(app.config, "MAIL_URL", smtp_server.url)
    boss = UserFactory(role_name="admin")
    target = UserFactory(role_name="admin", email="lost.phone@example.org")
    client_for(app, target)
    pats.create(target, name="ci", scopes=["articles:read"])
    assert _reset(client_for(app, boss), target, reason=f"  {REASON}\n").status_code == 302

    (event,) = _events()
    assert (event.actor_id, event.target_user_id) == (boss.id, target.id)
    assert event.details == {"reason": REASON, "sessions_ended": 1, "tokens_revoked": 1}
    assert event.ip and event.request_id
    msg = smtp_server.mailbox.last_to("lost.phone@example.org")
    assert msg["Subject"] == "Your two-factor authentication was reset"
    text = msg.get_body(preferencelist=("plain",)).get_content()
    assert REASON in text and "set up two-factor authentication again" in text
    assert "https://localhost/auth/reset" in text
    assert TOTP_SECRET not in msg.as_string()


@pytest.mark.asvs("V6.4.4")
def test_the_command_line_resets_through_the_same_service(app: Flask, runner: Any) -> None:
    target = UserFactory(username="lostphone", two_factor=True)
    outbox = Outbox(app)
    missing = runner.invoke(args=["users", "reset-2fa", "lostphone"])
    assert missing.exit_code == 2 and "--reason" in missing.output
    short = runner.invoke(args=["users", "reset-2fa", "lostphone", "--reason", "ok"])
    assert short.exit_code == 1 and "10 to 500 characters" in short.output
    assert runner.invoke(args=["users", "reset-2fa", "nobody", "--reason", REASON]).exit_code == 1
    _unchanged(target)

    result = runner.invoke(args=["users", "reset-2fa", "LostPhone", "--reason", REASON])

    assert result.exit_code == 0, result.output
    assert "Two-factor authentication of lostphone is reset" in result.output
    assert not stored_user(target.id).has_2fa
    (event,) = _events()
    assert (event.actor_id, event.target_user_id) == (None, target.id)
    assert event.details["reason"] == REASON
    (msg,) = outbox.to(target.email)
    assert "from the sign-in page" in msg.get_body(preferencelist=("plain",)).get_content()
    again = runner.invoke(args=["users", "reset-2fa", "lostphone", "--reason", REASON])
    # Nothing left to reset, as for disabling a disabled account: done, nothing changed.
    assert again.exit_code == 0 and "nothing changed" in again.output
    assert len(_events()) == 1


def test_a_reason_of_many_lines_within_its_limit_is_taken(app: Flask) -> None:
    """A browser sends each line break as CRLF: a reason within REASON_MAX characters but
    written on many lines was refused as too long."""
    boss = UserFactory(role_name="admin")
    target = UserFactory(role_name="editor", two_factor=True)
    reason = "\r\n".join(["Checked ID card in person."] * 18)  # 485 characters stored
    assert len(reason.replace("\r\n", "\n")) <= admin.REASON_MAX < len(reason)
    assert _reset(client_for(app, boss), target, reason=reason).status_code == 302
    (event,) = _events()
    assert event.details["reason"] == " ".join(reason.split())  # stored on one line
