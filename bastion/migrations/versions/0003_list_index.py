"""content: the published-list index also orders by id, so listing reads 20 index entries

The article lists order by ``published_at DESC, id DESC`` and count the published rows.
With ``id`` in the index PostgreSQL and SQLite walk it backwards and stop after one page,
instead of sorting every published article on each request.

Revision ID: 0003_list_index
Revises: 0002_api
"""
from alembic import op

revision = "0003_list_index"
down_revision = "0002_api"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("articles", schema=None) as batch_op:
        batch_op.drop_index("ix_articles_status_published_at")
        batch_op.create_index(
            "ix_articles_status_published_at_id", ["status", "published_at", "id"], unique=False
        )


def downgrade():
    with op.batch_alter_table("articles", schema=None) as batch_op:
        batch_op.drop_index("ix_articles_status_published_at_id")
        batch_op.create_index(
            "ix_articles_status_published_at", ["status", "published_at"], unique=False
        )
