"""SQLite enforces foreign keys as PostgreSQL does.

SQLite checks foreign keys only on connections that turn ``PRAGMA foreign_keys`` on, each
one for itself; without it ``ondelete="CASCADE"`` would cascade on PostgreSQL only, and a
row naming a missing user would be stored on SQLite (development, half of the tests) and
refused in production. The pragma is ignored inside a transaction: it is set when the
connection is opened, before pysqlite begins one. Migrations turn it off for their own
connection (``bastion/migrations/env.py``), since batch mode drops and recreates tables.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, event


def enforce_foreign_keys(engine: Engine) -> None:
    """Turn foreign keys on for every connection ``engine`` opens, if it is SQLite."""
    if engine.dialect.name == "sqlite" and not event.contains(engine, "connect", _foreign_keys_on):
        event.listen(engine, "connect", _foreign_keys_on)


def _foreign_keys_on(dbapi_connection: Any, _record: Any) -> None:
    """The ``connect`` hook: runs once per new DB-API connection, outside any transaction."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()
