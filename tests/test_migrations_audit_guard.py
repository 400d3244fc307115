"""PostgreSQL keeps the audit trail append-only against TRUNCATE too, whichever way the
schema was made (the migrations, or ``create_all`` as the test fixtures do).

The row trigger never fires for TRUNCATE, which touches no row: ``TRUNCATE audit_events``
emptied the trail without a trace until a statement trigger refused it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from flask import Flask
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from bastion.extensions import db
from bastion.models import AuditEvent, User
from bastion.security import audit
from tests.factories import UserFactory

SCHEMAS = ("migrations", "create_all")

# Every way a TRUNCATE can name the trail: alone, without its (absent) children, in a list
# with other tables, and reached through CASCADE.
ATTACKS = (
    "TRUNCATE audit_events",
    "TRUNCATE ONLY audit_events RESTART IDENTITY",
    "TRUNCATE TABLE login_throttles, audit_events",
    "TRUNCATE roles, users, audit_events RESTART IDENTITY CASCADE",
)


def _counts() -> tuple[int, int]:
    db.session.expire_all()
    return (db.session.scalar(select(func.count()).select_from(AuditEvent)) or 0,
            db.session.scalar(select(func.count()).select_from(User)) or 0)


def _trail(make_app: Callable[..., Flask], schema: str) -> Flask:
    """A PostgreSQL app whose trail and users table each hold rows."""
    app = make_app(backend="postgresql", migrate=schema == "migrations")
    with app.app_context():
        user = UserFactory(username="victim")
        db.session.commit()
        audit.record("login.failure", target_user_id=user.id, details={"username": "victim"})
        audit.record("login.success", actor_id=user.id, target_user_id=user.id)
    return app


@pytest.fixture
def careless_role(pg_base_url: str) -> Iterator[Callable[[], str]]:
    """A role like ``bastion_app`` (not the tables' owner) granted every table privilege,
    TRUNCATE included, as a hand-made deployment might: ``grant()`` names it."""
    from tests.support.services import pg_execute

    name = f"t_app_{uuid.uuid4().hex[:10]}"
    pg_execute(pg_base_url, f'CREATE ROLE "{name}" NOLOGIN')

    def grant() -> str:
        schema = db.session.scalar(text("SELECT current_schema()"))
        db.session.execute(text(f'GRANT USAGE ON SCHEMA "{schema}" TO "{name}"'))
        db.session.execute(text(f'GRANT ALL ON ALL TABLES IN SCHEMA "{schema}" TO "{name}"'))
        db.session.commit()
        return name

    yield grant
    pg_execute(pg_base_url, f'DROP OWNED BY "{name}"')
    pg_execute(pg_base_url, f'DROP ROLE "{name}"')


@pytest.mark.asvs("V16.4.2")
@pytest.mark.parametrize("schema", SCHEMAS)
@pytest.mark.parametrize("statement", ATTACKS)
def test_truncating_the_audit_trail_is_refused_and_every_row_stays(
    make_app: Callable[..., Flask], schema: str, statement: str
) -> None:
    app = _trail(make_app, schema)
    with app.app_context():
        before = _counts()
        with pytest.raises(DBAPIError, match="append-only: TRUNCATE is refused"):
            db.session.execute(text(statement))
        db.session.rollback()
        assert _counts() == before == (2, 1)


@pytest.mark.asvs("V16.4.2")
@pytest.mark.parametrize("schema", SCHEMAS)
def test_truncating_the_accounts_the_trail_names_leaves_the_trail(
    make_app: Callable[..., Flask], schema: str
) -> None:
    """No foreign key joins the trail to ``users`` (it outlives the accounts it names), so a
    CASCADE from there cannot reach it: the events about a wiped account are still there."""
    app = _trail(make_app, schema)
    with app.app_context():
        db.session.execute(text("TRUNCATE users RESTART IDENTITY CASCADE"))
        db.session.commit()
        assert _counts() == (2, 0)


@pytest.mark.asvs("V16.4.2")
@pytest.mark.parametrize("schema", SCHEMAS)
def test_a_role_that_does_not_own_the_trail_cannot_truncate_or_lift_the_guard(
    make_app: Callable[..., Flask], schema: str, careless_role: Callable[[], str]
) -> None:
    """Even granted TRUNCATE, the app's role is refused; and only the table's owner may
    disable or drop a trigger, which is why the app must not connect as the owner."""
    app = _trail(make_app, schema)
    with app.app_context():
        role = careless_role()
        for statement, refusal in (
            ("TRUNCATE audit_events", "append-only: TRUNCATE is refused"),
            ("DELETE FROM audit_events", "append-only"),
            ("ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_truncate", "owner"),
            ("DROP TRIGGER audit_events_no_truncate ON audit_events", "owner"),
            ("SET session_replication_role = replica", "permission denied"),
        ):
            db.session.execute(text(f'SET ROLE "{role}"'))
            with pytest.raises(DBAPIError, match=refusal):
                db.session.execute(text(statement))
            db.session.rollback()
        db.session.execute(text("RESET ROLE"))
        assert _counts() == (2, 1)


@pytest.mark.asvs("V16.4.2")
def test_the_truncate_guard_goes_with_its_revision_and_comes_back(
    make_app: Callable[..., Flask],
) -> None:
    """Downgrading below 0015 removes the trigger (and only it); upgrading puts it back."""
    from flask_migrate import downgrade, upgrade

    def triggers() -> set[str]:
        return set(db.session.scalars(text(
            "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"
            " AND tgrelid = 'audit_events'::regclass")))

    app = make_app(backend="postgresql", migrate=True)
    with app.app_context():
        assert triggers() == {"audit_events_no_change", "audit_events_no_truncate"}
        db.session.remove()
        downgrade(revision="0014_rerender_bounded_references")
        assert triggers() == {"audit_events_no_change"}
        db.session.remove()
        upgrade()
        assert triggers() == {"audit_events_no_change", "audit_events_no_truncate"}
