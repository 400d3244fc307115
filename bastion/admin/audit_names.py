"""Who the ids in audit events name: the account that held the id when the event happened.

Rows name users by id alone (no foreign key: the trail outlives the accounts), so an id may
name an account deleted since, whose ``user.deleted`` event keeps its username, and, on
SQLite, which hands out the highest id again once its account is deleted, also a later
account. An id is therefore read as of the event's time:

1. the live account with that id, when it was created at or before the event;
2. else the first account deleted at or after the event (``user.deleted`` with that id as
   its target), by the username its deletion recorded, marked as deleted;
3. else no one known: the account went without a ``user.deleted`` (unconfirmed sign-ups
   purged in bulk), or the event came after the last deletion. A later account's name is
   never given to what happened before it existed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import literal, select, union_all

from bastion.admin.audit_log import DELETED_EVENT, readable
from bastion.extensions import db
from bastion.models import AuditEvent, User


@dataclass(frozen=True)
class Named:
    """An id as the audit page shows it; ``username`` is None when no account is known."""

    id: int
    username: str | None = None
    deleted: bool = False

    @property
    def label(self) -> str:
        """The name before the id: ``alice``, ``alice (deleted)`` or ``unknown``."""
        name = self.username if self.username is not None else "unknown"
        return f"{name} (deleted)" if self.deleted else name


@dataclass(frozen=True)
class _Accounts:
    live: Mapping[int, tuple[datetime, str]]  # id -> (created_at, username)
    deleted: Mapping[int, list[tuple[datetime, str | None]]]  # id -> deletions, oldest first


def actors_and_targets(
    events: Sequence[AuditEvent],
) -> dict[int, tuple[Named | None, Named | None]]:
    """Each event's actor and target (None where the event has none), by event id.

    One query for the whole page, however many events and ids it shows.
    """
    ids = {i for e in events for i in (e.actor_id, e.target_user_id) if i is not None}
    accounts = _accounts(ids)
    return {
        e.id: (_named(e.actor_id, e.created_at, accounts),
               _named(e.target_user_id, e.created_at, accounts))
        for e in events
    }


def _accounts(ids: Iterable[int]) -> _Accounts:
    """The live accounts and the recorded deletions of ``ids``, in one UNION query."""
    ids = sorted(ids)
    if not ids:
        return _Accounts({}, {})
    live = select(
        User.id.label("id"),
        User.username.label("name"),
        User.created_at.label("at"),
        literal(False).label("deleted"),
    ).where(User.id.in_(ids))
    gone = select(
        AuditEvent.target_user_id,
        AuditEvent.details["username"].as_string(),
        AuditEvent.created_at,
        literal(True),
    ).where(AuditEvent.event == DELETED_EVENT, AuditEvent.target_user_id.in_(ids))
    accounts: dict[int, tuple[datetime, str]] = {}
    deletions: dict[int, list[tuple[datetime, str | None]]] = {}
    for row in db.session.execute(union_all(live, gone)):
        name = readable(row.name) if isinstance(row.name, str) else None
        if row.deleted:
            deletions.setdefault(row.id, []).append((row.at, name))
        else:
            accounts[row.id] = (row.at, name or "")
    for held in deletions.values():
        held.sort(key=lambda deletion: deletion[0])
    return _Accounts(accounts, deletions)


def _named(user_id: int | None, at: datetime, accounts: _Accounts) -> Named | None:
    """Who held ``user_id`` at ``at`` (the rules in the module's docstring)."""
    if user_id is None:
        return None
    live = accounts.live.get(user_id)
    if live is not None and live[0] <= at:
        return Named(user_id, live[1])
    for deleted_at, username in accounts.deleted.get(user_id, ()):
        if deleted_at >= at:
            return Named(user_id, username, deleted=True)
    return Named(user_id)
