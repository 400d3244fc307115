"""The first-admin setup page racing a sign-up for the same username or address.

``create_first_admin`` checks the username and address, then commits the account with the
claim of its link. A sign-up committing the same name or address in between made the unique
index refuse the insert, and the IntegrityError came out as a 500 ("bad input is a 4xx,
never a 500"); the admin could not tell what to change.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from bastion.extensions import db
from bastion.models import Role, SetupToken, User
from bastion.setup.services import issue_setup_token
from tests.factories import UserFactory
from tests.support.accounts import post_form

ADMIN = {"username": "root-admin", "email": "admin@example.org",
         "password": "granite orchard lantern 1987", "confirm": "granite orchard lantern 1987"}


def _looked_too_early(real: Callable[[str], bool]) -> Callable[[str], bool]:
    """The first check answers "free", as it did just before the other sign-up committed."""
    calls: list[str] = []

    def check(value: str) -> bool:
        calls.append(value)
        return False if len(calls) == 1 else real(value)

    return check


def _admins() -> int:
    return int(db.session.scalar(
        select(func.count()).select_from(User).join(Role).where(Role.name == "admin")) or 0)


@pytest.mark.asvs("V2.3.3", "V16.5.1")
@pytest.mark.parametrize(("taken", "message"), [
    ("username", "That username is taken."),
    ("email", "An account with that email address already exists."),
])
def test_a_setup_racing_a_sign_up_gets_a_form_error_and_keeps_its_link(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch, taken: str, message: str
) -> None:
    from bastion.auth import services

    # What the racing sign-up committed after the setup request's check.
    if taken == "username":
        UserFactory(username=ADMIN["username"], email="someone@example.org")
    else:
        UserFactory(username="someone", email=ADMIN["email"])
    check = f"{taken}_taken"
    monkeypatch.setattr(services, check, _looked_too_early(getattr(services, check)))
    path = f"/setup/{issue_setup_token()}"

    resp = post_form(client, path, ADMIN)

    assert resp.status_code == 422
    assert message in resp.get_data(as_text=True)
    assert _admins() == 0
    # Rolled back whole: the link is not spent, and the admin fixes the field and goes on.
    assert db.session.scalar(select(SetupToken.used_at)) is None
    fixed = {**ADMIN, taken: "root-admin2" if taken == "username" else "admin2@example.org"}
    assert post_form(client, path, fixed).status_code == 302
    assert _admins() == 1
