"""Security events of accounts land in the audit trail with who, where and which request."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from bastion.extensions import db
from bastion.models import AuditEvent, User
from tests.factories import PASSWORD
from tests.support.account_fixtures import sign_in
from tests.support.accounts import Outbox, post_form


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
