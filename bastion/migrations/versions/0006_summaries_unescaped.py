"""content: store article summaries as plain text, escaped only where they are shown

A summary was the sanitiser's output, which is HTML: "Q&A" was stored as "Q&amp;A", so
lists and the API showed the entity. Summaries are now unescaped once when saved; this
computes the stored ones again with the application's own function. Data only: the
schema does not change, and downgrading keeps the corrected text.

Revision ID: 0006_summaries_unescaped
Revises: 0005_rerender_articles
"""
from alembic import op

revision = "0006_summaries_unescaped"
down_revision = "0005_rerender_articles"
branch_labels = None
depends_on = None


def upgrade():
    # The application's own renderer: stored HTML and summaries become what a save would
    # produce now.
    from bastion.content.stored_html import refresh_rendered

    refresh_rendered(op.get_bind())


def downgrade():
    pass
