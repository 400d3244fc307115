"""content: render every stored article again with the current sanitiser

Article HTML is rendered from Markdown when it is saved. Images in Markdown could point at
any path of this site, so a reader's browser fetched it with their cookies (the audit
export, for one, was a GET that wrote). The sanitiser now keeps an image only when it is
one of this site's uploads; this renders the stored articles again so old ones follow the
same rule. Data only: the schema does not change, and downgrading keeps the safer HTML.

Revision ID: 0005_rerender_articles
Revises: 0004_security_stamp
"""
from alembic import op

revision = "0005_rerender_articles"
down_revision = "0004_security_stamp"
branch_labels = None
depends_on = None


def upgrade():
    # The application's own renderer: stored HTML and summaries become what a save would
    # produce now.
    from bastion.content.stored_html import refresh_rendered

    refresh_rendered(op.get_bind())


def downgrade():
    pass
