"""content: a full-text index for article search on PostgreSQL

Search used ILIKE '%q%' over every title and body: a full read of up to 100,000 characters
per article on every search, and a hostile pattern cost the text's length times its own.
The GIN index makes a search an index lookup (``bastion.content.search``). SQLite has no
tsvector and keeps matching substrings, so nothing changes there.

Revision ID: 0007_article_search
Revises: 0006_summaries_unescaped
"""
from alembic import op

revision = "0007_article_search"
down_revision = "0006_summaries_unescaped"
branch_labels = None
depends_on = None

# Frozen copy of bastion.models.content.SEARCH_DOCUMENT_SQL as of this revision.
DOCUMENT = "to_tsvector('simple'::regconfig, (title::text || ' '::text) || body_md)"


def upgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"CREATE INDEX ix_articles_search ON articles USING gin ({DOCUMENT})")


def downgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_index("ix_articles_search", table_name="articles")
