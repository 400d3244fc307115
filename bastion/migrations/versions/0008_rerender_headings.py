"""content: render stored articles again: nested headings, table alignment, prose summaries

The renderer now places an article's headings one level under the page's title (a "#"
heading is an h2, so every page keeps a single h1) and keeps a Markdown table's column
alignment through the sanitiser, and a summary is the article's prose (headings, tables
and code ran together in it). Articles saved earlier kept their old HTML and summary until
edited; this renders them again. Data only: the schema does not change, and downgrading keeps the
new HTML.

Revision ID: 0008_rerender_headings
Revises: 0007_article_search
"""
from alembic import op

revision = "0008_rerender_headings"
down_revision = "0007_article_search"
branch_labels = None
depends_on = None


def upgrade():
    from bastion.content.stored_html import refresh_rendered

    refresh_rendered(op.get_bind())


def downgrade():
    pass
