"""SQLite enforces foreign keys as PostgreSQL does (``bastion.models.sqlite``).

SQLite checks them only on a connection that turns them on. Without that, a row naming a
missing user was stored and a user's rows stayed behind as orphans on SQLite (development,
half of the suite) while PostgreSQL refused or cascaded: such a bug passed on SQLite. The
migrations turn enforcement off while batch mode rebuilds tables, and must leave every new
connection with it on.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import delete, func, select, text
from sqlalchemy.exc import IntegrityError

import bastion
from bastion.extensions import db
from bastion.models import (
    ApiToken,
    Article,
    Comment,
    RecoveryCode,
    RefreshToken,
    Upload,
    User,
    UserSession,
    utcnow,
)
from tests.factories import ArticleFactory, CommentFactory, UserFactory

MISSING = 2_000_000


def _count(model: type[object], *where: object) -> int:
    stmt = select(func.count()).select_from(model)  # type: ignore[arg-type]
    return int(db.session.scalar(stmt.where(*where)) or 0)  # type: ignore[arg-type]


def _later() -> datetime:
    return utcnow() + timedelta(days=1)


@pytest.mark.asvs("V2.3.3")
def test_every_connection_enforces_foreign_keys(make_app: Callable[..., Flask]) -> None:
    """Each connection of each app's engine (SQLite only: PostgreSQL always enforces them)."""
    for app in (make_app(backend="sqlite"), make_app(backend="sqlite")):
        with app.app_context(), db.engine.connect() as first, db.engine.connect() as second:
            assert first.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert second.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


@pytest.mark.asvs("V2.3.3")
@pytest.mark.parametrize("model", ["session", "token", "article", "upload"])
def test_a_row_naming_a_missing_user_is_refused(app: Flask, model: str) -> None:
    rows = {
        "session": lambda: UserSession(token_hash="a" * 64, user_id=MISSING,
                                       expires_at=_later()),
        "token": lambda: ApiToken(user_id=MISSING, name="n", token_hash="b" * 64, hint="bst_",
                                  scopes="articles:read", expires_at=_later()),
        "article": lambda: Article(author_id=MISSING, title="t", slug="t", body_md="b",
                                   body_html="<p>b</p>", summary="b"),
        "upload": lambda: Upload(id="u1", owner_id=MISSING, kind="avatar",
                                 content_type="image/png", size=1, width=1, height=1,
                                 storage_name="u1.png"),
    }
    db.session.add(rows[model]())
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()


@pytest.mark.asvs("V2.3.3")
def test_a_comment_on_a_missing_article_is_refused(app: Flask) -> None:
    author = UserFactory()
    db.session.add(Comment(article_id=MISSING, author_id=author.id, body="orphan"))
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()


@pytest.mark.asvs("V2.3.3", "V7.4.2")
def test_deleting_a_user_row_takes_everything_that_names_it(app: Flask) -> None:
    """A bare DELETE on ``users``, past the ORM and the uploads hook: the database alone
    removes the account's sign-ins, tokens, codes, articles, comments and images."""
    user, other = UserFactory(role_name="editor"), UserFactory()
    own = ArticleFactory(author=user)
    theirs = ArticleFactory(author=other)
    CommentFactory(article=own, author=other)  # someone else's comment on their article
    CommentFactory(article=theirs, author=user)
    db.session.add_all([
        UserSession(token_hash="c" * 64, user_id=user.id, expires_at=_later()),
        RefreshToken(jti="j1", family_id="f1", user_id=user.id, expires_at=_later()),
        ApiToken(user_id=user.id, name="n", token_hash="d" * 64, hint="bst_",
                 scopes="articles:read", expires_at=_later()),
        RecoveryCode(user_id=user.id, code_hash="e" * 64),
        Upload(id="u2", owner_id=user.id, kind="avatar", content_type="image/png", size=1,
               width=1, height=1, storage_name="u2.png"),
        Upload(id="u3", owner_id=other.id, article_id=own.id, kind="article",
               content_type="image/png", size=1, width=1, height=1, storage_name="u3.png"),
    ])
    db.session.commit()
    user_id, own_id, theirs_id = user.id, own.id, theirs.id
    db.session.remove()

    with db.engine.begin() as conn:
        conn.execute(delete(User.__table__).where(User.__table__.c.id == user_id))

    for model, column in ((UserSession, UserSession.user_id), (RefreshToken, RefreshToken.user_id),
                          (ApiToken, ApiToken.user_id), (RecoveryCode, RecoveryCode.user_id),
                          (Article, Article.author_id), (Comment, Comment.author_id),
                          (Upload, Upload.owner_id)):
        assert _count(model, column == user_id) == 0, model
    # Their article went with its comments and images, whoever wrote them.
    assert _count(Comment, Comment.article_id == own_id) == 0
    assert _count(Upload, Upload.article_id == own_id) == 0
    assert _count(Article, Article.id == theirs_id) == 1


@pytest.mark.asvs("V2.3.3")
def test_a_migrated_database_enforces_foreign_keys(make_app: Callable[..., Flask]) -> None:
    """The migrations turn enforcement off for their connection; it goes back to the pool
    with enforcement on again."""
    app = make_app(backend="sqlite", migrate=True)
    with app.app_context():
        assert db.session.scalar(text("PRAGMA foreign_keys")) == 1
        db.session.add(UserSession(token_hash="f" * 64, user_id=MISSING, expires_at=_later()))
        with pytest.raises(IntegrityError):
            db.session.commit()
        db.session.rollback()


def _head() -> str:
    """The newest revision of the project's migrations."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory(str(Path(bastion.__file__).parent / "migrations")).get_current_head()
    assert head is not None
    return head


DANGLING_REVISION = '''"""probe: leaves a comment on an article that does not exist"""
from alembic import op

revision = "9999_dangling"
down_revision = "{head}"
branch_labels = None
depends_on = None


def upgrade():
    op.execute(
        "INSERT INTO comments (article_id, author_id, body, created_at, updated_at) "
        "SELECT 2000000, id, 'orphan', created_at, created_at FROM users"
    )


def downgrade():
    pass
'''


@pytest.mark.asvs("V2.3.3")
def test_a_migration_that_leaves_a_dangling_reference_fails(
    make_app: Callable[..., Flask], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """SQLite checks nothing while migrations run; ``PRAGMA foreign_key_check`` afterwards
    stops the upgrade with the tables named instead of leaving the rows."""
    from flask_migrate import upgrade

    directory = tmp_path / "migrations"
    shutil.copytree(Path(bastion.__file__).parent / "migrations", directory,
                    ignore=shutil.ignore_patterns("__pycache__"))
    (directory / "versions" / "9999_dangling.py").write_text(
        DANGLING_REVISION.replace("{head}", _head()), "utf-8")
    app = make_app(backend="sqlite", migrate=True)
    with app.app_context():
        UserFactory()
        db.session.commit()
        db.session.remove()
        with pytest.raises(SystemExit):
            upgrade(directory=str(directory))
        assert "comments -> articles: 1" in capfd.readouterr().err  # Alembic's log handler
        assert db.session.scalar(text("PRAGMA foreign_keys")) == 1


def test_rows_left_dangling_before_the_upgrade_do_not_stop_it(
    make_app: Callable[..., Flask], capfd: pytest.CaptureFixture[str]
) -> None:
    """A development database from before SQLite enforced anything may hold orphans: the
    upgrade names them and runs; only the ones a revision leaves stop it."""
    from flask_migrate import downgrade, upgrade

    app = make_app(backend="sqlite", migrate=True)
    with app.app_context():
        downgrade(revision="0010_email_idna_domains")
        with db.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.execute(
                text("INSERT INTO recovery_codes (user_id, code_hash, created_at)"
                     " VALUES (:user_id, 'old', '2020-01-01 00:00:00')"),
                {"user_id": MISSING},
            )
            conn.commit()
            conn.exec_driver_sql("PRAGMA foreign_keys=ON")
            conn.commit()
        upgrade()
        assert "recovery_codes -> users: 1" in capfd.readouterr().err
        assert db.session.scalar(text("SELECT version_num FROM alembic_version")) == _head()
