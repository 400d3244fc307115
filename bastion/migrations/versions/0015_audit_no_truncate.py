"""audit trail: PostgreSQL refuses TRUNCATE of audit_events too

The append-only trigger of ``0001`` fires for each row that UPDATE or DELETE touches, and
TRUNCATE touches no row: ``TRUNCATE audit_events`` emptied the trail silently. A statement
trigger ``BEFORE TRUNCATE`` refuses it, also when the table is reached through ``CASCADE``
or named in a list. SQLite has no TRUNCATE (nor triggers here): nothing to do there.

Revision ID: 0015_audit_no_truncate
Revises: 0014_rerender_bounded_references
"""
from alembic import op

revision = "0015_audit_no_truncate"
down_revision = "0014_rerender_bounded_references"
branch_labels = None
depends_on = None


def upgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        """
        CREATE FUNCTION audit_events_no_truncate() RETURNS trigger AS $$
        BEGIN
          RAISE EXCEPTION 'audit_events is append-only: TRUNCATE is refused';
        END;
        $$ LANGUAGE plpgsql;
        """
    )
    op.execute(
        "CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_events_no_truncate();"
    )


def downgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS audit_events_no_truncate ON audit_events")
    op.execute("DROP FUNCTION IF EXISTS audit_events_no_truncate()")
