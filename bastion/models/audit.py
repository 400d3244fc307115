"""Append-only audit trail of security events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import DDL, JSON, Index, String, event
from sqlalchemy.orm import Mapped, mapped_column

from bastion.models.base import Base, utcnow


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_event_created_at", "event", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    event: Mapped[str] = mapped_column(String(64))
    # No foreign keys to users: the trail outlives the accounts it talks about.
    actor_id: Mapped[int | None] = mapped_column(default=None, index=True)
    target_user_id: Mapped[int | None] = mapped_column(default=None, index=True)
    ip: Mapped[str] = mapped_column(String(45), default="")
    user_agent: Mapped[str] = mapped_column(String(255), default="")
    request_id: Mapped[str] = mapped_column(String(128), default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


# The guard the migrations install (0001, 0015), for a schema made by ``create_all`` too:
# PostgreSQL refuses UPDATE and DELETE of each row, and TRUNCATE (which touches no row, so
# only a statement trigger sees it), also from code that bypasses the ORM.
_APPEND_ONLY_DDL = (
    """
    CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger AS $$
    BEGIN
      RAISE EXCEPTION 'audit_events is append-only';
    END;
    $$ LANGUAGE plpgsql
    """,
    "CREATE TRIGGER audit_events_no_change BEFORE UPDATE OR DELETE ON audit_events "
    "FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()",
    """
    CREATE OR REPLACE FUNCTION audit_events_no_truncate() RETURNS trigger AS $$
    BEGIN
      RAISE EXCEPTION 'audit_events is append-only: TRUNCATE is refused';
    END;
    $$ LANGUAGE plpgsql
    """,
    "CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_events_no_truncate()",
)
for _statement in _APPEND_ONLY_DDL:
    _ddl = DDL(_statement)  # type: ignore[no-untyped-call]
    event.listen(AuditEvent.__table__, "after_create", _ddl.execute_if(dialect="postgresql"))
