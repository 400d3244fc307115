"""content: render stored articles again: uploaded images carry their width and height

An article's images had no size, so the text below each one jumped down as it loaded. The
renderer now writes each uploaded image's stored size on its ``<img>``
(``bastion.content.rendering``); this renders the articles saved earlier again. Data only:
the schema does not change, and downgrading keeps the new HTML.

Revision ID: 0016_rerender_image_sizes
Revises: 0015_audit_no_truncate
"""
from alembic import op

revision = "0016_rerender_image_sizes"
down_revision = "0015_audit_no_truncate"
branch_labels = None
depends_on = None


def upgrade():
    from bastion.content.stored_html import refresh_rendered

    refresh_rendered(op.get_bind())


def downgrade():
    pass
