"""Security events of accounts land in the audit trail with who, where and which request."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from bastion.extensions import db
from bastion.models import AuditEvent, User
from tests.factories import PASSWORD
from tests.support.account_fixtures import sign_in
from tests.support.accounts import Outbox, post_form, unused_code


@pytest.mark.asvs("V16.3.1", "V16.2.1")
def test_account_events_are_audited_with_context(client: FlaskClient, outbox: Outbox) -> None:
    pw = "violet tractor morning 88"
    post_form(client, "/auth/register",
              {"username": "dora", "email": "dora@example.org", "password": pw, "confirm": pw})
    post_form(client, outbox.link("dora@example.org", "/auth/confirm/"), {})
    sign_in(client, "dora", "wrong password here")
    client.post("/auth/login", headers={"User-Agent": "audit-probe/1.0",
                                        "X-Request-ID": "req-audit-12345678"},
                data={"username": "dora", "password": pw,
                      "csrf_token": _token(client)})
    post_form(client, "/account", {}, action="/account/sessions/revoke-all")
    events = list(db.session.scalars(select(AuditEvent).order_by(AuditEvent.id)))
    names = [e.event for e in events]
    for expected in ("register", "email.confirmed", "login.failure", "login.success",
                     "session.revoked_all"):
        assert expected in names, names
    success = next(e for e in events if e.event == "login.success")
    user = db.session.scalar(select(User).where(User.username == "dora"))
    assert success.actor_id == user.id
    assert success.ip == "127.0.0.1"
    assert success.user_agent == "audit-probe/1.0"
    assert success.request_id == "req-audit-12345678"
    assert PASSWORD not in str([e.details for e in events]) and pw not in str([e.details for e in events])


def _token(client: FlaskClient) -> str:
    from tests.support.auth import csrf_token

    return csrf_token(client, "/auth/login")


@pytest.mark.asvs("V16.3.1")
def test_every_sign_in_attempt_is_audited_with_the_factor_it_used(
    client: FlaskClient, user: User, totp_user: tuple[User, str]
) -> None:
    """Web and API, password-only and two-step: each attempt, right or wrong, leaves an
    event that says which factor was tried."""
    tess, secret = totp_user

    def next_code() -> str:  # the next step's code, as if the clock moved on
        db.session.refresh(tess)
        tess.totp_last_step = None
        db.session.commit()
        return unused_code(secret, None)

    sign_in(client, "alice", "not alices password")
    sign_in(client, "alice")
    web = client.application.test_client()
    sign_in(web, "tess", "not tesss password")
    sign_in(web, "tess")  # password right: the code comes next
    post_form(web, "/auth/2fa", {"code": "000000"})
    post_form(web, "/auth/2fa", {"code": next_code()})
    api = client.application.test_client()
    api.post("/api/v1/auth/token", json={"username": "alice", "password": "nope, wrong"})
    api.post("/api/v1/auth/token", json={"username": "alice", "password": PASSWORD})
    api.post("/api/v1/auth/token", json={"username": "tess", "password": PASSWORD, "otp": "000000"})
    api.post("/api/v1/auth/token",
             json={"username": "tess", "password": PASSWORD, "otp": next_code()})

    def seen(who: User) -> list[tuple[str, str | None, str | None]]:
        rows = db.session.scalars(select(AuditEvent).where(
            AuditEvent.target_user_id == who.id, AuditEvent.event.startswith("login."),
        ).order_by(AuditEvent.id))
        return [(e.event, (e.details or {}).get("method"), (e.details or {}).get("channel"))
                for e in rows]

    # A failed password is ``login.failure``, a failed code ``login.2fa_failure``.
    assert seen(user) == [
        ("login.failure", None, None),
        ("login.success", "password", None),
        ("login.failure", None, "api"),
        ("login.success", "password", "api"),
    ]
    assert seen(tess) == [
        ("login.failure", None, None),
        ("login.password_ok", None, None),
        ("login.2fa_failure", None, None),
        ("login.success", "2fa", None),
        ("login.2fa_failure", None, "api"),
        ("login.success", "2fa", "api"),
    ]
