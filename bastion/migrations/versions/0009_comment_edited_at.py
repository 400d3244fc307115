"""comments: when the text was last edited, so readers can tell an edited comment

``updated_at`` changes with any write to the row; ``edited_at`` only when the author or a
moderator changes the text. Comments edited before this revision are recognised by an
``updated_at`` more than a second after ``created_at`` (both are set by the same insert).

Revision ID: 0009_comment_edited_at
Revises: 0008_rerender_headings
"""
from datetime import timedelta

import sqlalchemy as sa
from alembic import op

revision = "0009_comment_edited_at"
down_revision = "0008_rerender_headings"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("comments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("edited_at", sa.DateTime(timezone=True), nullable=True))
    comments = sa.table(
        "comments",
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("updated_at", sa.DateTime(timezone=True)),
        sa.column("edited_at", sa.DateTime(timezone=True)),
    )
    # Compared in Python: adding an interval is written differently on each database. The
    # rows are streamed; only the ids of the (few) edited comments are kept.
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(sa.column("id"), comments.c.created_at, comments.c.updated_at)
        .select_from(comments)
        .where(comments.c.updated_at > comments.c.created_at)
        .execution_options(stream_results=True)
    )
    edited = [r.id for r in rows if r.updated_at - r.created_at > timedelta(seconds=1)]
    for start in range(0, len(edited), 500):
        bind.execute(
            sa.update(comments)
            .where(sa.column("id").in_(edited[start:start + 500]))
            .values(edited_at=comments.c.updated_at)
        )


def downgrade():
    with op.batch_alter_table("comments", schema=None) as batch_op:
        batch_op.drop_column("edited_at")
