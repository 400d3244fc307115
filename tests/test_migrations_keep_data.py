"""Rolling a release back and forward keeps the rows: every downgrade step down to the first
revision, then the upgrade back to head, on SQLite and PostgreSQL.

``test_migrations`` runs the same steps on empty tables; batch mode rebuilds SQLite tables
on the way down, where a lost or duplicated row would show only with data in them. Every
table holds rows, children included: with foreign keys enforced, rebuilding ``users`` or
``comments`` (dropping the old table) would delete the rows that reference it, unless the
migrations turn enforcement off while they run (``migrations/env.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import func, inspect, select, table

from bastion.extensions import db
from bastion.models import (
    ApiToken,
    LoginThrottle,
    RecoveryCode,
    RefreshToken,
    RetiredUsername,
    RevokedToken,
    SetupToken,
    Upload,
    UserSession,
    utcnow,
)
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


def _fill_every_table() -> None:
    """A row (or more) in every table, each child row referencing its parents."""
    editor = UserFactory(username="ed", role_name="editor")
    admin = UserFactory(username="root", role_name="admin")
    article = ArticleFactory(author=editor)
    CommentFactory(article=article, author=admin)
    CommentFactory(article=article, author=editor)
    later = utcnow() + timedelta(days=1)
    for n, user in enumerate((editor, admin)):
        db.session.add_all([
            UserSession(token_hash=f"{n}s".ljust(64, "0"), user_id=user.id, expires_at=later),
            RefreshToken(jti=f"jti{n}", family_id=f"fam{n}", user_id=user.id, expires_at=later),
            ApiToken(user_id=user.id, name="probe", token_hash=f"{n}t".ljust(64, "0"),
                     hint="bst_probe", scopes="articles:read", expires_at=later),
            RecoveryCode(user_id=user.id, code_hash=f"{n}r".ljust(64, "0")),
            Upload(id=f"upload{n}", owner_id=user.id, article_id=article.id if n else None,
                   kind="article", content_type="image/png", size=1, width=1, height=1,
                   storage_name=f"upload{n}.png"),
        ])
    db.session.add_all([
        RevokedToken(key="jti:probe", expires_at=later),
        LoginThrottle(key="probe", failures=1),
        SetupToken(token_hash="s".ljust(64, "0"), expires_at=later),
        RetiredUsername(username="gone"),
    ])
    audit.record("probe.kept", details={"step": "head"})
    db.session.commit()


@pytest.mark.asvs("V2.3.3")
@pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression-based")
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_rows_survive_each_downgrade_step_and_the_upgrade_back(
    make_app: Callable[..., Flask], backend: str
) -> None:
    from flask_migrate import downgrade, upgrade

    app = make_app(backend=backend, migrate=True)
    with app.app_context():
        _fill_every_table()
        at_head = _row_counts()
        assert [n for n, c in at_head.items() if c == 0] == []
        db.session.remove()
        for revision in DOWN_TO_FIRST:
            downgrade(revision=revision)
            now = _row_counts()
            assert {n: c for n, c in now.items() if at_head[n] != c} == {}, revision
        first = set(now)
        upgrade()
        # The tables later revisions create come back empty; the others keep every row.
        assert _row_counts() == {n: c if n in first else 0 for n, c in at_head.items()}
        db.session.remove()
        db.engine.dispose()
