"""content: render stored articles again: struck-through text keeps its strike

The renderer wrote Markdown's ``~~text~~`` as ``<s>``, which the sanitiser does not allow,
so stored articles kept the words and lost the strike ("~~Tuesday~~ Wednesday" read as
both). It now writes ``<del>``; this renders the articles saved earlier again. Data only:
the schema does not change, and downgrading keeps the new HTML.

Revision ID: 0013_rerender_strikethrough
Revises: 0012_recovery_code_key
"""
from alembic import op

revision = "0013_rerender_strikethrough"
down_revision = "0012_recovery_code_key"
branch_labels = None
depends_on = None


def upgrade():
    from bastion.content.stored_html import refresh_rendered

    refresh_rendered(op.get_bind())


def downgrade():
    pass
