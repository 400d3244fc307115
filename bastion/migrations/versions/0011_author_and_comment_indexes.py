"""content: a profile's articles and an article's comments are read from an index in order

A profile lists one author's published articles, newest first, and counts them; an article
page lists its comments oldest first, 50 at a time, and counts them. The single-column
indexes on ``articles.author_id`` and ``comments.article_id`` found the rows but not their
order, so every view sorted all of a prolific author's articles or all comments of a busy
discussion to show one page. The new indexes lead with the same columns, so they also
serve every lookup the old ones did (drafts, deletions, the foreign keys' cascades).

On PostgreSQL the indexes are built and dropped CONCURRENTLY, outside the migration's
transaction: a plain CREATE INDEX holds a lock that blocks every write to the table for the
whole build, an outage on a site with many articles or comments. A concurrent build that
fails (cancelled, deadlocked, out of disk) leaves an INVALID index under the new name;
running the upgrade again drops that leftover and builds it anew, and skips an index that
was already built. SQLite ignores the option and builds them as before.

Revision ID: 0011_author_and_comment_indexes
Revises: 0010_email_idna_domains
"""
from contextlib import nullcontext

import sqlalchemy as sa
from alembic import op

revision = "0011_author_and_comment_indexes"
down_revision = "0010_email_idna_domains"
branch_labels = None
depends_on = None

# (table, new index, its columns, the single-column index it replaces, that one's column)
INDEXES = (
    ("articles", "ix_articles_author_id_status_published_at_id",
     ["author_id", "status", "published_at", "id"], "ix_articles_author_id", ["author_id"]),
    ("comments", "ix_comments_article_id_id", ["article_id", "id"],
     "ix_comments_article_id", ["article_id"]),
)


def upgrade():
    with _outside_transaction():
        # The new index first: the foreign keys are never without one.
        for table, new, columns, old, _ in INDEXES:
            _create_index(table, new, columns)
            _drop_index(table, old)


def downgrade():
    with _outside_transaction():
        for table, new, _, old, old_columns in reversed(INDEXES):
            _create_index(table, old, old_columns)
            _drop_index(table, new)


def _is_postgresql():
    return op.get_bind().dialect.name == "postgresql"


def _outside_transaction():
    """PostgreSQL refuses CONCURRENTLY inside a transaction block. Alembic commits the
    migrations run so far before the block (their version stamp included), so a failure
    in here leaves the database at the previous revision with whatever indexes were built."""
    if _is_postgresql():
        return op.get_context().autocommit_block()
    return nullcontext()


def _create_index(table, name, columns):
    """Build ``name`` without blocking writes; an INVALID leftover of a failed concurrent
    build is dropped first (IF NOT EXISTS would keep it), a valid one is kept."""
    if _is_postgresql() and _invalid_index(name):
        op.drop_index(name, table_name=table, postgresql_concurrently=True, if_exists=True)
    op.create_index(name, table, columns, unique=False, postgresql_concurrently=True,
                    if_not_exists=True)


def _drop_index(table, name):
    op.drop_index(name, table_name=table, postgresql_concurrently=True, if_exists=True)


def _invalid_index(name):
    """Whether an index called ``name`` on the search path is marked invalid."""
    found = op.get_bind().scalar(
        sa.text("SELECT NOT indisvalid FROM pg_catalog.pg_index "
                "WHERE indexrelid = to_regclass(:name)"),
        {"name": name},
    )
    return bool(found)
