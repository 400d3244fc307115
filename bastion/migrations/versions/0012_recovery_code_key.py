"""recovery codes: the name of the key their digests were made with

A recovery code is kept only as a digest keyed with SECRET_KEY, so after a key rotation it
matches only while its key stays a fallback. Recording which key made it lets
``secret-key reseal`` say when a fallback no longer serves anyone, and the account page ask
the owners of older codes to make new ones. Codes made before this revision stay unnamed
(NULL): which key made them cannot be told from their digests.

Revision ID: 0012_recovery_code_key
Revises: 0011_author_and_comment_indexes
"""
import sqlalchemy as sa
from alembic import op

revision = "0012_recovery_code_key"
down_revision = "0011_author_and_comment_indexes"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("recovery_codes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("key_id", sa.String(length=16), nullable=True))


def downgrade():
    with op.batch_alter_table("recovery_codes", schema=None) as batch_op:
        batch_op.drop_column("key_id")
