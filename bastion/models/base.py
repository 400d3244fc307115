"""Declarative base with a naming convention (stable constraint names for migrations)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import DateTime, MetaData, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, registry
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# Ids are 32-bit INTEGER columns on SQLite and PostgreSQL alike: a larger id cannot exist,
# and handing it to the database is an overflow error rather than "not found".
ID_MAX = 2**31 - 1


def utcnow() -> datetime:
    """Aware UTC now; used as a callable default so it runs per row, not once at import."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware datetimes on every backend (SQLite drops the zone; we put it back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given; use bastion.models.base.utcnow()")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    # One registry carries both, so subclasses (Flask-SQLAlchemy makes one) inherit them.
    registry = registry(
        metadata=MetaData(naming_convention=NAMING_CONVENTION),
        type_annotation_map={datetime: UTCDateTime()},
    )


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        default=utcnow, onupdate=utcnow, server_default=func.now()
    )


def affected_rows(result: object) -> int:
    """Rows touched by an UPDATE/DELETE; conditional updates use it to claim a row once."""
    return int(getattr(result, "rowcount", 0) or 0)


def storable_text(value: str | None, limit: int) -> str:
    """Request text (a header) fit for a text column of ``limit`` characters.

    PostgreSQL refuses NUL in text: a User-Agent holding one made the audit row or the
    session record fail, losing the event or answering a right password with a 500.
    Gunicorn refuses such headers; other servers pass them on.
    """
    return (value or "").replace("\x00", "\ufffd")[:limit]
