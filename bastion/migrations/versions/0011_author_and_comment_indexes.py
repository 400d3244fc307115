"""content: a profile's articles and an article's comments are read from an index in order

A profile lists one author's published articles, newest first, and counts them; an article
page lists its comments oldest first, 50 at a time, and counts them. The single-column
indexes on ``articles.author_id`` and ``comments.article_id`` found the rows but not their
order, so every view sorted all of a prolific author's articles or all comments of a busy
discussion to show one page. The new indexes lead with the same columns, so they also
serve every lookup the old ones did (drafts, deletions, the foreign keys' cascades).

Revision ID: 0011_author_and_comment_indexes
Revises: 0010_email_idna_domains
"""
from alembic import op

revision = "0011_author_and_comment_indexes"
down_revision = "0010_email_idna_domains"
branch_labels = None
depends_on = None


def upgrade():
    # The new index first: the foreign keys are never without one.
    with op.batch_alter_table("articles", schema=None) as batch_op:
        batch_op.create_index(
            "ix_articles_author_id_status_published_at_id",
            ["author_id", "status", "published_at", "id"],
            unique=False,
        )
        batch_op.drop_index("ix_articles_author_id")
    with op.batch_alter_table("comments", schema=None) as batch_op:
        batch_op.create_index("ix_comments_article_id_id", ["article_id", "id"], unique=False)
        batch_op.drop_index("ix_comments_article_id")


def downgrade():
    with op.batch_alter_table("comments", schema=None) as batch_op:
        batch_op.create_index("ix_comments_article_id", ["article_id"], unique=False)
        batch_op.drop_index("ix_comments_article_id_id")
    with op.batch_alter_table("articles", schema=None) as batch_op:
        batch_op.create_index("ix_articles_author_id", ["author_id"], unique=False)
        batch_op.drop_index("ix_articles_author_id_status_published_at_id")
