"""The one-time setup link creates the first admin, once, and only while none exists."""

from __future__ import annotations

from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from bastion.extensions import db
from bastion.models import AuditEvent, SetupToken, User, utcnow
from bastion.setup.services import issue_setup_token
from tests.support.auth import csrf_token

ADMIN = {"username": "root-admin", "email": "admin@example.org", "password": "granite orchard lantern 1987"}


def _submit(client: FlaskClient, token: str, **data: str):  # type: ignore[no-untyped-def]
    path = f"/setup/{token}"
    page = client.get(path)
    if page.status_code != 200:
        return page
    return client.post(path, data={**ADMIN, **data, "csrf_token": csrf_token(client, path)})


@pytest.mark.asvs("V6.4.1", "V6.3.2")
def test_setup_link_creates_the_first_admin_once(app: Flask, client: FlaskClient) -> None:
    token = issue_setup_token()
    resp = _submit(client, token)
    assert resp.status_code == 302
    admin = db.session.scalar(select(User).where(User.username == "root-admin"))
    assert admin is not None and admin.is_admin and admin.email_confirmed_at
    assert db.session.scalar(select(AuditEvent).where(AuditEvent.event == "setup.admin_created"))
    # Reuse of the same link, and any other outstanding link, is dead now.
    assert client.get(f"/setup/{token}").status_code == 404
    other = issue_setup_token()
    assert _submit(client, other, username="second").status_code == 404
    assert db.session.query(User).count() == 1


def test_setup_link_is_useless_once_an_admin_exists(app: Flask, client: FlaskClient) -> None:
    from bastion.auth.services import create_user

    token = issue_setup_token()
    create_user("cli-admin", "cli@example.test", "another long passphrase", role="admin", confirmed=True)
    assert client.get(f"/setup/{token}").status_code == 404


def test_expired_or_forged_setup_link_is_404(app: Flask, client: FlaskClient) -> None:
    token = issue_setup_token()
    db.session.execute(
        update(SetupToken).values(expires_at=utcnow() - timedelta(seconds=1))
    )
    db.session.commit()
    assert client.get(f"/setup/{token}").status_code == 404
    assert client.get("/setup/forged-token-value").status_code == 404
    assert client.get("/setup/" + "x" * 500).status_code == 404


def test_weak_admin_password_is_a_form_error(app: Flask, client: FlaskClient) -> None:
    token = issue_setup_token()
    resp = _submit(client, token, password="short")
    assert resp.status_code == 200
    assert "at least 12" in resp.get_data(as_text=True)
    assert db.session.query(User).count() == 0
    # The link still works after a failed attempt.
    assert client.get(f"/setup/{token}").status_code == 200


def test_create_admin_command(app: Flask) -> None:
    runner = app.test_cli_runner()
    result = runner.invoke(
        args=["create-admin", "--username", "ops", "--email", "ops@example.test",
              "--password", "an operator passphrase"]
    )
    assert result.exit_code == 0, result.output
    assert db.session.scalar(select(User).where(User.username == "ops")).is_admin  # type: ignore[union-attr]
    again = runner.invoke(
        args=["create-admin", "--username", "ops", "--email", "x@example.test",
              "--password", "an operator passphrase"]
    )
    assert again.exit_code != 0
    assert "taken" in again.output
