"""Count the SQL a piece of code sends (the statements the engine executes, as text), and
the rows a refused request must leave as they were."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from bastion.extensions import db


@contextmanager
def statements() -> Iterator[list[str]]:
    """The statements executed inside the block (needs an app context)."""
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(args[2])  # (conn, cursor, statement, parameters, context, executemany)

    engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def row_count(model: type) -> int:
    """How many rows ``model``'s table holds, read afresh."""
    return int(db.session.scalar(db.select(db.func.count()).select_from(model)) or 0)
