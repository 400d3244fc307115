"""Row locks that work the same on PostgreSQL and SQLite.

SQLite ignores ``SELECT ... FOR UPDATE``; a no-op write takes the row lock on PostgreSQL and
the database's write lock on SQLite, and both are held until the transaction ends. Service
functions take one before a check-then-write that parallel requests must not interleave.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import select, update
from sqlalchemy.orm import Session, scoped_session

from bastion.extensions import db
from bastion.models import Article, User


def lock_user(user_id: int) -> None:
    """Serialise work on one user's belongings (uploads and quota, personal tokens)."""
    db.session.execute(
        update(User)
        .where(User.id == user_id)
        .values(updated_at=User.updated_at)
        .execution_options(synchronize_session=False, user_state_neutral=True)
    )


def lock_articles_of(user_ids: Collection[int],
                     session: Session | scoped_session[Session] | None = None) -> None:
    """Lock the articles of accounts being deleted as their deletion will, until commit.

    The lock order of every change to content is: the actor's lock, then the article's,
    then its images and comments. A deletion that held the user's lock and deleted the
    images of their articles, to meet an article's lock only in the database's cascade,
    kept it the other way round: with an admin deleting one of those articles at the same
    moment, each waited for the other until PostgreSQL aborted one (a 500). Taken right
    after the user's lock, before any of their rows is touched, in id order. ``FOR UPDATE``,
    as the cascade's delete: an image being stored into one of the articles (which holds it
    ``FOR KEY SHARE``) commits first and goes with it, files included, or finds it gone.
    On SQLite, ignored: the user's lock already holds the database's write lock.
    """
    if user_ids:
        (session or db.session).execute(
            select(Article.id)
            .where(Article.author_id.in_(list(user_ids)))
            .order_by(Article.id)
            .with_for_update()
        )
