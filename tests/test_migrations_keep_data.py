"""Rolling a release back and forward keeps the rows: every downgrade step down to the first
revision, then the upgrade back to head, on SQLite and PostgreSQL.

``test_migrations`` runs the same steps on empty tables; batch mode rebuilds SQLite tables
on the way down, where a lost or duplicated row would show only with data in them.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask
from sqlalchemy import func, inspect, select, table

from bastion.extensions import db
from bastion.security import audit
from tests.factories import ArticleFactory, CommentFactory, UserFactory

# Newest first: each step of a rollback to the first revision.
DOWN_TO_FIRST = (
    "0009_comment_edited_at", "0008_rerender_headings", "0007_article_search",
    "0006_summaries_unescaped", "0005_rerender_articles", "0004_security_stamp",
    "0003_list_index", "0002_api", "0002_accounts", "0001",
)


def _row_counts() -> dict[str, int]:
    with db.engine.connect() as conn:
        names = [n for n in inspect(conn).get_table_names() if n != "alembic_version"]
        return {
            n: conn.execute(select(func.count()).select_from(table(n))).scalar_one() for n in names
        }


@pytest.mark.asvs("V2.3.3")
@pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression-based")
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_rows_survive_each_downgrade_step_and_the_upgrade_back(
    make_app: Callable[..., Flask], backend: str
) -> None:
    from flask_migrate import downgrade, upgrade

    app = make_app(backend=backend, migrate=True)
    with app.app_context():
        editor = UserFactory(username="ed", role_name="editor")
        article = ArticleFactory(author=editor)
        CommentFactory(article=article, author=UserFactory(username="root", role_name="admin"))
        audit.record("probe.kept", details={"step": "head"})
        db.session.commit()
        at_head = _row_counts()
        db.session.remove()
        for revision in DOWN_TO_FIRST:
            downgrade(revision=revision)
            now = _row_counts()
            assert {n: c for n, c in now.items() if at_head[n] != c} == {}, revision
        upgrade()
        assert _row_counts() == at_head
        db.session.remove()
        db.engine.dispose()
