"""A deleted account's username is retired for good: no later account can have it.

Otherwise someone else could register the name at once and be shown at the same
``/u/<name>``, in old links and mentions, and under it in the audit trail. Every way an
account is made (registration, the first admin's setup link, ``create-admin``) refuses
the name, in any spelling that is the same username, with the message a taken one gets.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from functools import partial
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from bastion.admin import deletion
from bastion.auth.registration import purge_unconfirmed
from bastion.auth.services import USERNAME_TAKEN
from bastion.extensions import db
from bastion.models import AuditEvent, RetiredUsername, User, utcnow
from bastion.setup.services import issue_setup_token
from tests.factories import UserFactory
from tests.support.accounts import full_width, post_form, user_count
from tests.support.auth import csrf_token
from tests.support.roles import client_for, post

PASSWORD = "violet tractor morning 88"
NEW = {"email": "newcomer@example.org", "password": PASSWORD, "confirm": PASSWORD}
# The same username as "leaver", as the registration form may receive it.
SPELLINGS = ["leaver", "LEAVER", " Leaver ", full_width("leaver")]


def _register(client: FlaskClient, username: str) -> tuple[int, bool]:
    """The status of a sign-up with ``username`` and whether the page says it is taken."""
    resp = post_form(client, "/auth/register", {**NEW, "username": username})
    return resp.status_code, USERNAME_TAKEN in resp.get_data(as_text=True)


def _retired() -> dict[str, Any]:
    db.session.expire_all()
    return {r.username: r.retired_at for r in db.session.scalars(select(RetiredUsername))}


def _delete_own(app: Flask, user: User) -> None:
    resp = post(client_for(app, user), "/account/delete", {"confirm": user.username})
    assert resp.status_code == 302


def _delete_by_admin(app: Flask, user: User) -> None:
    boss = UserFactory(role_name="admin")
    resp = post(client_for(app, boss), f"/admin/users/{user.id}/delete", {"confirm": user.username})
    assert resp.status_code == 302


DELETIONS = {"own": _delete_own, "admin": _delete_by_admin}


@pytest.mark.asvs("V2.3.2")
@pytest.mark.parametrize("spelling", SPELLINGS, ids=["same", "upper", "spaced", "full-width"])
@pytest.mark.parametrize("by", list(DELETIONS))
def test_a_deleted_accounts_username_cannot_be_registered_again(
    app: Flask, by: str, spelling: str
) -> None:
    leaver = UserFactory(username="leaver", role_name="editor")
    held = UserFactory(username="holder")
    before = utcnow()
    DELETIONS[by](app, leaver)
    accounts = user_count()

    refused = _register(app.test_client(), spelling)
    taken = _register(app.test_client(), held.username)  # a name an account holds

    assert refused == taken == (422, True)
    assert user_count() == accounts  # nobody got the name
    retired = _retired()
    assert list(retired) == ["leaver"]  # canonical, as the account held it
    assert before <= retired["leaver"] <= utcnow()
    # The trail keeps the name too; a free name still registers.
    (event,) = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "user.deleted"))
    assert event.details["username"] == "leaver"
    assert _register(app.test_client(), "newcomer") == (302, False)


def test_the_deletion_pages_say_the_username_is_retired(app: Flask) -> None:
    leaver = UserFactory(username="leaver")
    own = client_for(app, leaver).get("/account/delete").get_data(as_text=True)
    boss = client_for(app, UserFactory(role_name="admin"))
    admins = boss.get(f"/admin/users/{leaver.id}/delete").get_data(as_text=True)
    assert "your username, leaver, which is retired: no one can register it after you" in own
    assert "the username leaver, retired: no later account can register it" in admins


@pytest.mark.asvs("V2.3.2")
def test_create_admin_refuses_a_retired_username(app: Flask, runner: Any) -> None:
    _delete_own(app, UserFactory(username="leaver"))
    accounts = user_count()
    result = runner.invoke(
        args=["create-admin", "--username", "Leaver", "--email", "ops@example.org",
              "--password-stdin"],
        input=f"{PASSWORD}\n",
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert USERNAME_TAKEN in result.output
    assert user_count() == accounts


@pytest.mark.asvs("V2.3.2")
def test_the_setup_link_refuses_a_retired_username(app: Flask) -> None:
    """The first admin's link works while no admin exists; members may have come and gone."""
    _delete_own(app, UserFactory(username="leaver"))
    client = app.test_client()
    path = f"/setup/{issue_setup_token()}"
    data = {"username": "LEAVER", "email": "root@example.org", "password": PASSWORD,
            "confirm": PASSWORD, "csrf_token": csrf_token(client, path)}  # fmt: skip
    resp = client.post(path, data=data)
    assert resp.status_code == 422
    assert USERNAME_TAKEN in resp.get_data(as_text=True)
    assert user_count() == 0


@contextmanager
def _audit_refuses_deletions() -> Iterator[None]:
    """A database trigger that fails the ``user.deleted`` audit row: the deletion's last
    write before its commit, so every earlier write of the transaction must roll back."""
    statements = {
        "sqlite": [
            "CREATE TRIGGER refuse_deletion_audit BEFORE INSERT ON audit_events "
            "WHEN NEW.event = 'user.deleted' BEGIN SELECT RAISE(ABORT, 'refused here'); END",
        ],
        "postgresql": [
            "CREATE FUNCTION refuse_deletion_audit() RETURNS trigger AS $$ BEGIN "
            "RAISE EXCEPTION 'refused here'; END; $$ LANGUAGE plpgsql",
            "CREATE TRIGGER refuse_deletion_audit BEFORE INSERT ON audit_events FOR EACH ROW "
            "WHEN (NEW.event = 'user.deleted') EXECUTE FUNCTION refuse_deletion_audit()",
        ],
    }[db.engine.dialect.name]
    with db.engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement))
    try:
        yield
    finally:
        db.session.rollback()
        with db.engine.begin() as conn:
            if db.engine.dialect.name == "postgresql":
                conn.execute(text("DROP TRIGGER refuse_deletion_audit ON audit_events"))
                conn.execute(text("DROP FUNCTION refuse_deletion_audit()"))
            else:
                conn.execute(text("DROP TRIGGER refuse_deletion_audit"))


@pytest.mark.asvs("V2.3.3")
@pytest.mark.parametrize("by", ["own", "admin"])
def test_a_deletion_that_fails_retires_nothing(app: Flask, by: str) -> None:
    boss = UserFactory(role_name="admin")
    leaver = UserFactory(username="leaver")
    leaver_id = leaver.id
    delete = (
        partial(deletion.delete_own_account, leaver) if by == "own"
        else partial(deletion.delete_user, boss, leaver)
    )  # fmt: skip
    with _audit_refuses_deletions():
        with pytest.raises(DBAPIError, match="refused here"):
            delete(confirmation="leaver")
        db.session.rollback()
        assert db.session.get(User, leaver_id) is not None
        assert _retired() == {}

    deletion.delete_user(boss, db.session.get(User, leaver_id), confirmation="leaver")
    assert list(_retired()) == ["leaver"]


@pytest.mark.asvs("V2.3.2")
def test_a_deletion_refused_retires_nothing(app: Flask) -> None:
    from bastion.admin.services import AdminError

    boss = UserFactory(role_name="admin")
    with pytest.raises(AdminError):
        deletion.delete_user(boss, UserFactory(username="leaver"), confirmation="someone-else")
    assert _retired() == {}
    assert _register(app.test_client(), "leaver") == (422, True)  # still held by its account


@pytest.mark.asvs("V2.3.2")
def test_an_account_never_confirmed_that_is_purged_leaves_its_name_free(app: Flask) -> None:
    """It never had a public page: only the deletions of accounts retire names."""
    UserFactory(username="leaver", email_confirmed_at=None)
    assert purge_unconfirmed(timedelta(0), details={"by": "test"}) == 1
    assert _retired() == {}
    assert _register(app.test_client(), "leaver") == (302, False)


@pytest.mark.asvs("V2.3.2")
def test_an_admin_deleting_an_account_never_confirmed_leaves_its_name_free(app: Flask) -> None:
    """As a purge would: it never had a public page, and an admin deleting a sign-up that
    squats a name (or has a mistyped address) frees the name rather than burning it."""
    squatter = UserFactory(username="leaver", email_confirmed_at=None)
    boss = client_for(app, UserFactory(role_name="admin"))
    page = boss.get(f"/admin/users/{squatter.id}/delete").get_data(as_text=True)
    assert "retired" not in page

    _delete_by_admin(app, squatter)
    assert _retired() == {}
    assert _register(app.test_client(), "leaver") == (302, False)
