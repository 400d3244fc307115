"""Attacks on the audit trail's recording and filters that earlier reviews let through."""

from __future__ import annotations

import pytest
from flask import Flask
from sqlalchemy import select

from bastion.extensions import db
from bastion.models import AuditEvent
from tests.factories import UserFactory
from tests.support.roles import client_for


def _events(name: str) -> list[AuditEvent]:
    db.session.expire_all()
    return list(db.session.scalars(select(AuditEvent).where(AuditEvent.event == name)))


@pytest.mark.asvs("V16.3.3")
def test_a_nul_byte_in_the_user_agent_cannot_erase_the_event(app: Flask) -> None:
    # PostgreSQL refuses NUL in text: the row failed, so a forged CSRF post left no trace
    # and a refused export answered 500. Gunicorn refuses such a header; other servers
    # (the development server, uWSGI, waitress) pass it on.
    sent = "curl/8\x00<script>"
    boss = UserFactory(role_name="admin")

    forged = app.test_client().post(
        "/auth/login", data={"username": "a", "password": "b"}, headers={"User-Agent": sent}
    )
    refused = client_for(app, boss).get(
        "/admin/audit.csv", headers={"User-Agent": sent, "Sec-Fetch-Site": "cross-site"}
    )

    assert (forged.status_code, refused.status_code) == (400, 403)
    for name in ("csrf.failure", "audit.export_refused"):
        (row,) = _events(name)
        assert row.user_agent == "curl/8\ufffd<script>"


@pytest.mark.asvs("V2.2.1")
@pytest.mark.parametrize("path", ["/admin/audit", "/admin/audit.csv"])
def test_swapped_dates_are_refused_not_answered_with_nothing(app: Flask, path: str) -> None:
    # `flask audit export` refused them; the page showed "No events" and the download was an
    # empty file recorded as an export: to a hurried admin, proof that nothing happened.
    client = client_for(app, UserFactory(role_name="admin"))

    resp = client.get(f"{path}?since=2026-05-01&until=2026-01-31")

    assert resp.status_code == 400
    assert "the first not after the last" in resp.get_data(as_text=True)
    assert _events("audit.exported") == []
    if path == "/admin/audit":
        assert "This date is before the From date" in resp.get_data(as_text=True)
    # One whole day (the same date twice) is a range, not a swap.
    same_day = client.get(f"{path}?since=2026-01-31&until=2026-01-31")
    assert same_day.status_code == 200
