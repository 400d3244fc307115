"""content: render every stored article again with the current sanitiser

Article HTML is rendered from Markdown when it is saved. Images in Markdown could point at
any path of this site, so a reader's browser fetched it with their cookies (the audit
export, for one, was a GET that wrote). The sanitiser now keeps an image only when it is
one of this site's uploads; this renders the stored articles again so old ones follow the
same rule. Data only: the schema does not change, and downgrading keeps the safer HTML.

Revision ID: 0005_rerender_articles
Revises: 0004_security_stamp
"""
import sqlalchemy as sa
from alembic import op

revision = "0005_rerender_articles"
down_revision = "0004_security_stamp"
branch_labels = None
depends_on = None

BATCH = 500


def upgrade():
    # The application's own renderer: the point is that stored HTML matches what a save
    # would produce now.
    from bastion.content.rendering import render_markdown

    articles = sa.table(
        "articles", sa.column("id", sa.Integer), sa.column("body_md", sa.Text),
        sa.column("body_html", sa.Text),
    )
    bind = op.get_bind()
    last = 0
    while True:
        rows = bind.execute(
            sa.select(articles.c.id, articles.c.body_md, articles.c.body_html)
            .where(articles.c.id > last).order_by(articles.c.id).limit(BATCH)
        ).all()
        if not rows:
            break
        for article_id, body_md, body_html in rows:
            fresh = render_markdown(body_md or "")
            if fresh != body_html:
                bind.execute(
                    articles.update().where(articles.c.id == article_id).values(body_html=fresh)
                )
        last = rows[-1][0]


def downgrade():
    pass
