"""users: a security stamp that "sign out everywhere" renews, so emailed links die with it

Emailed links (confirmation, password reset, email change) carry a fingerprint of the
account's email, password hash and this stamp. Ending every session renews the stamp, so a
pending link, such as an email change asked for from a stolen session, dies with them.

Revision ID: 0004_security_stamp
Revises: 0003_list_index
"""
import sqlalchemy as sa
from alembic import op

revision = "0004_security_stamp"
down_revision = "0003_list_index"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("security_stamp", sa.String(length=32), server_default="", nullable=False)
        )


def downgrade():
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("security_stamp")
