"""users: email addresses stored with their domain in IDNA ASCII (``xn--``)

Addresses were stored NFKC-normalised and in lower case with the domain as typed, so
``user@bücher.example`` and ``user@xn--bcher-kva.example`` were two addresses: two
accounts for one mailbox, and "taken" checks and reset requests that missed the other
spelling. The application now stores ``bastion.auth.services.canonical_email``; this
rewrites the addresses stored before to that form.

Where several rows would end up with one canonical address (one mailbox already held by
several accounts in different spellings), none of them is changed: one rewrite would break
the unique index, and which account keeps the address, or whether two accounts are one
person's, is not a migration's decision. Their ids and usernames are logged as a warning;
each keeps being found by the spelling it holds, and docs/security.md ("Email addresses")
says what an operator does about them. No account is deleted or merged. An address
email-validator refuses is its own canonical form and stays as it is.

Data only. Downgrading keeps the rewritten addresses: the earlier code finds them when
typed in that form.

Revision ID: 0010_email_idna_domains
Revises: 0009_comment_edited_at
"""
import logging
from collections import defaultdict

import sqlalchemy as sa
from alembic import op

revision = "0010_email_idna_domains"
down_revision = "0009_comment_edited_at"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")


def upgrade():
    from bastion.auth.services import canonical_email

    users = sa.table(
        "users",
        sa.column("id", sa.Integer),
        sa.column("username", sa.String),
        sa.column("email", sa.String),
    )
    bind = op.get_bind()
    # Streamed; only the (few) rows whose address changes are kept, by their new address.
    moving = defaultdict(list)
    rows = bind.execute(
        sa.select(users.c.id, users.c.username, users.c.email)
        .execution_options(stream_results=True)
    )
    for row in rows:
        canonical = canonical_email(row.email)
        if canonical != row.email:
            moving[canonical].append(row)
    # A row already holding a new address is canonical (the form is idempotent), so it was
    # not kept above: look for such holders now.
    targets = list(moving)
    holders = defaultdict(list)
    for start in range(0, len(targets), 500):
        for row in bind.execute(
            sa.select(users.c.id, users.c.username, users.c.email)
            .where(users.c.email.in_(targets[start:start + 500]))
        ):
            holders[row.email].append(row)
    for canonical, movers in moving.items():
        if len(movers) == 1 and not holders[canonical]:
            bind.execute(
                sa.update(users)
                .where(users.c.id == movers[0].id, users.c.email == movers[0].email)
                .values(email=canonical)
            )
            continue
        sharing = sorted(holders[canonical] + movers, key=lambda r: r.id)
        log.warning(
            "0010_email_idna_domains: users %s hold one email address in different "
            "spellings; their addresses are left as they are (docs/security.md, "
            "'Email addresses')",
            ", ".join(f"{r.id} ({r.username})" for r in sharing),
        )


def downgrade():
    pass
