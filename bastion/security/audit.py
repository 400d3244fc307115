"""Audit trail: one row per security event, plus the same event as a JSON log line.

Rows are never updated or deleted: the ORM refuses it here, for changed or deleted objects
and for UPDATE/DELETE statements run through the session alike, and PostgreSQL refuses it
with a trigger (see the migration), so even a bug elsewhere cannot rewrite history.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import g, has_request_context, request
from flask_login import current_user
from sqlalchemy import event
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import ORMExecuteState, Session

from bastion.extensions import db
from bastion.models import AuditEvent
from bastion.models.base import storable_text

log = logging.getLogger("bastion.audit")


def signed_in_id() -> int | None:
    """The id of the request's signed-in user, read without touching the database.

    After a rollback the user's row is expired, and reading ``id`` loads it again; when an
    admin has deleted the account while the request ran, that load raises, and a refusal
    being audited turned into a 500. A mapped instance keeps its id in its identity key.
    """
    user = current_user._get_current_object() if current_user else None
    if user is None or not user.is_authenticated:
        return None
    state = sa_inspect(user, raiseerr=False)
    if state is not None and state.identity is not None:
        return int(state.identity[0])
    return int(user.id)  # the API's actor (``ApiActor``): a plain attribute


def _request_facts() -> dict[str, Any]:
    if not has_request_context():
        return {"ip": "", "user_agent": "", "request_id": "", "actor_id": None}
    actor = signed_in_id()
    return {
        "ip": storable_text(request.remote_addr, 45),
        "user_agent": storable_text(request.user_agent.string, 255),
        "request_id": getattr(g, "request_id", "")[:128],
        "actor_id": actor,
    }


def record(
    event_name: str,
    *,
    actor_id: int | None = None,
    target_user_id: int | None = None,
    details: dict[str, Any] | None = None,
    commit: bool = True,
) -> AuditEvent:
    """Store an event; ``commit=False`` lets a service commit it with its own change."""
    facts = _request_facts()
    if actor_id is not None:
        facts["actor_id"] = actor_id
    row = AuditEvent(event=event_name, target_user_id=target_user_id, details=details or {}, **facts)
    db.session.add(row)
    if commit:
        db.session.commit()
    log.info(
        "audit",
        extra={
            "event": event_name,
            "actor_id": row.actor_id,
            "target_user_id": target_user_id,
            "details": details or {},
        },
    )
    return row


@event.listens_for(Session, "before_flush")
def _refuse_audit_changes(session: Session, _ctx: object, _instances: object) -> None:
    for obj in list(session.dirty) + list(session.deleted):
        if isinstance(obj, AuditEvent):
            raise PermissionError("audit events are append-only")


@event.listens_for(Session, "do_orm_execute")
def _refuse_audit_statements(state: ORMExecuteState) -> None:
    """``update(AuditEvent)`` / ``delete(AuditEvent)`` never flush, so the hook above misses
    them; without this, only PostgreSQL's trigger would stop them (not SQLite)."""
    if not (state.is_update or state.is_delete):
        return
    # The target table, for ``update(AuditEvent)`` and ``update(AuditEvent.__table__)`` alike.
    if getattr(getattr(state.statement, "table", None), "name", None) == AuditEvent.__tablename__:
        raise PermissionError("audit events are append-only")
