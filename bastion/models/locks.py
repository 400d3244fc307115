"""Row locks that work the same on PostgreSQL and SQLite.

SQLite ignores ``SELECT ... FOR UPDATE``; a no-op write takes the row lock on PostgreSQL and
the database's write lock on SQLite, and both are held until the transaction ends. Service
functions take one before a check-then-write that parallel requests must not interleave.
"""

from __future__ import annotations

from sqlalchemy import update

from bastion.extensions import db
from bastion.models import User


def lock_user(user_id: int) -> None:
    """Serialise work on one user's belongings (uploads and quota, personal tokens)."""
    db.session.execute(
        update(User)
        .where(User.id == user_id)
        .values(updated_at=User.updated_at)
        .execution_options(synchronize_session=False, user_state_neutral=True)
    )
