"""users: a deleted account's username is retired, never given to another account

Deleting an account freed its username at once: someone else could register it and be
shown at the same ``/u/<name>``, in old links, mentions and the audit trail's
``user.deleted`` row. ``retired_usernames`` holds the canonical name of every account
deleted since (``bastion.admin.deletion`` writes it in the deletion's transaction), and
registration, the first admin's setup and ``create-admin`` refuse a retired name as a
taken one (``bastion.auth.services.username_taken``).

This also retires the names of accounts deleted before, as the audit trail's
``user.deleted`` rows name them (every deletion through Bastion is recorded there),
dated by their row. A name another account has taken since keeps its holder, and is
retired when that account is deleted. Accounts never confirmed that a sign-up or
``users purge-unconfirmed`` released are not in those rows and keep their names free.

The previous release, while it still serves, neither reads nor writes the table: a name it
deletes meanwhile is not retired (docs/deployment.md). Downgrading drops the table, and
with it the rule; upgrading again retires every name in the trail but those whose last
deletion says the account was never confirmed, and those an operator gave back
(``users.username_released``, ``flask users release-username``) after their last deletion.

Revision ID: 0018_retired_usernames
Revises: 0017_article_search_words
"""

import sqlalchemy as sa
from alembic import op

revision = "0018_retired_usernames"
down_revision = "0017_article_search_words"
branch_labels = None
depends_on = None

# Frozen here: the longest username the column (and the application) ever took.
USERNAME_MAX = 32
# Frozen here: the audit event of a retired name given back (``release-username``).
RELEASED_EVENT = "users.username_released"


def upgrade():
    retired = op.create_table(
        "retired_usernames",
        sa.Column("username", sa.String(length=USERNAME_MAX), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("username", name=op.f("pk_retired_usernames")),
    )
    op.bulk_insert(retired, _deleted_names())


def _deleted_names():
    """The names the trail's ``user.deleted`` rows give, each once with its last deletion,
    but for the names an account holds now, those whose last deletion says the account
    was never confirmed, and those given back since their last deletion."""
    bind = op.get_bind()
    events = sa.table(
        "audit_events",
        sa.column("id", sa.Integer),
        sa.column("event", sa.String),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("details", sa.JSON),
    )
    users = sa.table("users", sa.column("username", sa.String))
    held = set(bind.scalars(sa.select(users.c.username)))
    last = {}
    rows = bind.execute(
        sa.select(events.c.event, events.c.created_at, events.c.details)
        .where(events.c.event.in_(("user.deleted", RELEASED_EVENT)))
        .order_by(events.c.created_at, events.c.id)
    )
    for event, created_at, details in rows:
        name = details.get("username") if isinstance(details, dict) else None
        # Stored canonical by the deletion; anything else is no username of this site.
        if isinstance(name, str) and 0 < len(name) <= USERNAME_MAX and name not in held:
            # Events of this release (upgrading again after a downgrade): a deletion says
            # whether the account was ever confirmed, one never confirmed left its name
            # free; a name an operator gave back since stays free until deleted again.
            retire = event != RELEASED_EVENT and details.get("confirmed") is not False
            last[name] = (created_at, retire)
    return [{"username": n, "retired_at": at} for n, (at, retire) in last.items() if retire]


def downgrade():
    op.drop_table("retired_usernames")
