"""content: store article summaries as plain text, escaped only where they are shown

A summary was the sanitiser's output, which is HTML: "Q&A" was stored as "Q&amp;A", so
lists and the API showed the entity. Summaries are now unescaped once when saved; this
computes the stored ones again with the application's own function. Data only: the
schema does not change, and downgrading keeps the corrected text.

Revision ID: 0006_summaries_unescaped
Revises: 0005_rerender_articles
"""
import sqlalchemy as sa
from alembic import op

revision = "0006_summaries_unescaped"
down_revision = "0005_rerender_articles"
branch_labels = None
depends_on = None

BATCH = 500


def upgrade():
    from bastion.content.rendering import summarise

    articles = sa.table(
        "articles", sa.column("id", sa.Integer), sa.column("body_md", sa.Text),
        sa.column("summary", sa.Text),
    )
    bind = op.get_bind()
    last = 0
    while True:
        rows = bind.execute(
            sa.select(articles.c.id, articles.c.body_md, articles.c.summary)
            .where(articles.c.id > last).order_by(articles.c.id).limit(BATCH)
        ).all()
        if not rows:
            break
        for article_id, body_md, summary in rows:
            fresh = summarise(body_md or "")
            if fresh != summary:
                bind.execute(
                    articles.update().where(articles.c.id == article_id).values(summary=fresh)
                )
        last = rows[-1][0]


def downgrade():
    pass
