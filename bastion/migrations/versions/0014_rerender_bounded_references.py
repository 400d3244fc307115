"""content: render stored articles again: reference links repeat a bounded amount

A reference link (``[a]``) repeated its definition's address and title on every use, so a
100,000-character article could store and serve 17.5 MB of HTML. The renderer now bounds
what a document's references repeat (``bastion.content.rendering``); this renders the
articles saved earlier again. Data only: the schema does not change, and downgrading
keeps the new HTML.

Revision ID: 0014_rerender_bounded_references
Revises: 0013_rerender_strikethrough
"""
from alembic import op

revision = "0014_rerender_bounded_references"
down_revision = "0013_rerender_strikethrough"
branch_labels = None
depends_on = None


def upgrade():
    from bastion.content.stored_html import refresh_rendered

    refresh_rendered(op.get_bind())


def downgrade():
    pass
