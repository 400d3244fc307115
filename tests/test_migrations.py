"""The Alembic migrations build the same schema as the models, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select, text

from bastion.extensions import db
from bastion.models import Role


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_migrations_match_models_and_seed_roles(make_app, backend: str) -> None:  # type: ignore[no-untyped-def]
    app = make_app(backend=backend, migrate=True)
    with app.app_context(), db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
        assert diff == [], f"models and migrations differ: {diff}"
        names = set(db.session.scalars(select(Role.name)))
        assert names == {"viewer", "editor", "admin"}


@pytest.mark.asvs("V16.4.2")
def test_audit_table_is_append_only_in_postgresql(make_app) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy.exc import DBAPIError

    from bastion.security import audit

    app = make_app(backend="postgresql", migrate=True)
    with app.app_context():
        row = audit.record("test.event")
        with pytest.raises(DBAPIError, match="append-only"):
            db.session.execute(text("UPDATE audit_events SET event = 'x' WHERE id = :i"), {"i": row.id})
        db.session.rollback()
        with pytest.raises(DBAPIError, match="append-only"):
            db.session.execute(text("DELETE FROM audit_events"))
        db.session.rollback()
        # The ORM refuses too, on every backend.
        row = db.session.get(type(row), row.id)
        row.event = "rewritten"
        with pytest.raises(PermissionError):
            db.session.commit()
        db.session.rollback()
