"""The Alembic migrations build the same schema as the models, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select, text

from bastion.extensions import db
from bastion.models import Role


# The search index exists on PostgreSQL only (ddl_if), and SQLite cannot reflect expression
# indexes anyway; on PostgreSQL it is compared like every other index.
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_upgrading_marks_comments_edited_before_the_column_existed(make_app, backend: str) -> None:  # type: ignore[no-untyped-def]
    """Before ``edited_at``, an edit showed only as an ``updated_at`` later than the insert."""
    from datetime import timedelta

    from flask_migrate import downgrade, upgrade

    from bastion.models import Comment, utcnow
    from tests.factories import OldArticleFactory

    app = make_app(backend=backend, migrate=True)
    posted = utcnow() - timedelta(days=2)
    with app.app_context():
        downgrade(revision="0008_rerender_headings")
        article = OldArticleFactory()
        db.session.commit()
        ids = {}
        # The model already has the new column, so the old rows are written in SQL.
        for name, updated in (("untouched", posted + timedelta(microseconds=40)),
                              ("edited", posted + timedelta(hours=3))):
            db.session.execute(
                text("INSERT INTO comments (article_id, author_id, body, created_at, updated_at)"
                     " VALUES (:a, :u, :b, :c, :m)"),
                {"a": article.id, "u": article.author_id, "b": name, "c": posted, "m": updated},
            )
            ids[name] = db.session.scalar(text("SELECT id FROM comments WHERE body = :b"),
                                          {"b": name})
        db.session.commit()
        db.session.remove()
        upgrade()
        edited = {name: db.session.get(Comment, ident).edited_at for name, ident in ids.items()}
    assert edited["untouched"] is None
    assert edited["edited"] is not None
    assert abs((edited["edited"] - (posted + timedelta(hours=3))).total_seconds()) < 1


@pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression-based")
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_migrations_match_models_and_seed_roles(make_app, backend: str) -> None:  # type: ignore[no-untyped-def]
    app = make_app(backend=backend, migrate=True)
    with app.app_context(), db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
        assert diff == [], f"models and migrations differ: {diff}"
        names = set(db.session.scalars(select(Role.name)))
        assert names == {"viewer", "editor", "admin"}


@pytest.mark.asvs("V16.4.2")
def test_audit_table_is_append_only_in_postgresql(make_app) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy.exc import DBAPIError

    from bastion.security import audit

    app = make_app(backend="postgresql", migrate=True)
    with app.app_context():
        row = audit.record("test.event")
        with pytest.raises(DBAPIError, match="append-only"):
            db.session.execute(text("UPDATE audit_events SET event = 'x' WHERE id = :i"), {"i": row.id})
        db.session.rollback()
        with pytest.raises(DBAPIError, match="append-only"):
            db.session.execute(text("DELETE FROM audit_events"))
        db.session.rollback()
        # The ORM refuses too, on every backend.
        row = db.session.get(type(row), row.id)
        row.event = "rewritten"
        with pytest.raises(PermissionError):
            db.session.commit()
        db.session.rollback()


@pytest.mark.asvs("V3.5.3", "V1.3.1")
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_upgrading_renders_stored_articles_with_the_current_sanitiser(  # type: ignore[no-untyped-def]
    make_app, backend: str
) -> None:
    """Articles saved before images were limited to this site's uploads kept an image that
    made every reader's browser GET any path of the site (the audit export was one)."""
    from flask_migrate import downgrade, upgrade

    from bastion.models import Article
    from tests.factories import OldArticleFactory

    app = make_app(backend=backend, migrate=True)
    with app.app_context():
        downgrade(revision="0004_security_stamp")
        old = OldArticleFactory(body_md="![x](/admin/audit.csv?since=0001-01-01)\n\nKept *text*.",
                             body_html='<p><img src="/admin/audit.csv?since=0001-01-01" alt="x"></p>')
        db.session.commit()
        article_id = old.id
        db.session.remove()
        upgrade()
        html = db.session.get(Article, article_id).body_html
    assert "/admin/audit.csv" not in html
    assert "<em>text</em>" in html and 'alt="x"' in html


@pytest.mark.asvs("V1.2.1")
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_upgrading_stores_summaries_escaped_once(make_app, backend: str) -> None:  # type: ignore[no-untyped-def]
    """Summaries saved before were HTML entities ("Q&amp;A"), shown as such in lists and
    the API."""
    from flask_migrate import downgrade, upgrade

    from bastion.models import Article
    from tests.factories import OldArticleFactory

    app = make_app(backend=backend, migrate=True)
    with app.app_context():
        downgrade(revision="0005_rerender_articles")
        old = OldArticleFactory(body_md="Tom & Jerry <3 *you*", summary="Tom &amp; Jerry &lt;3 you")
        db.session.commit()
        article_id = old.id
        db.session.remove()
        upgrade()
        summary = db.session.get(Article, article_id).summary
    assert summary == "Tom & Jerry <3 you"


@pytest.mark.asvs("V1.2.1")
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_upgrading_renders_old_headings_and_tables_again(make_app, backend: str) -> None:  # type: ignore[no-untyped-def]
    """Articles saved before headings were nested under the page's h1 (and before table
    alignment survived the sanitiser) kept a second h1 until someone edited them."""
    from flask_migrate import downgrade, upgrade

    from bastion.content.rendering import render_markdown
    from bastion.models import Article
    from tests.factories import OldArticleFactory

    source = "# Part one\n\n| a | b |\n|:--|--:|\n| 1 | 2 |\n"
    app = make_app(backend=backend, migrate=True)
    with app.app_context():
        downgrade(revision="0007_article_search")
        old = OldArticleFactory(body_md=source, body_html="<h1>Part one</h1><table></table>",
                             summary="stale")
        db.session.commit()
        article_id = old.id
        db.session.remove()
        upgrade()
        fresh = db.session.get(Article, article_id)
        html, summary = fresh.body_html, fresh.summary
    assert html == render_markdown(source)
    assert "<h1>" not in html and "<h2>Part one</h2>" in html and 'align="right"' in html
    assert summary.startswith("Part one")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_upgrading_gives_old_struck_through_text_its_strike(make_app, backend: str) -> None:  # type: ignore[no-untyped-def]
    """Articles saved while ``~~text~~`` became a ``<s>`` the sanitiser dropped kept the words
    without the strike until edited."""
    from flask_migrate import downgrade, upgrade

    from bastion.models import Article
    from tests.factories import OldArticleFactory

    app = make_app(backend=backend, migrate=True)
    with app.app_context():
        downgrade(revision="0012_recovery_code_key")
        old = OldArticleFactory(body_md="~~Tuesday~~ Wednesday",
                             body_html="<p>Tuesday Wednesday</p>\n")
        db.session.commit()
        article_id = old.id
        db.session.remove()
        upgrade(revision="0013_rerender_strikethrough")
        html = db.session.get(Article, article_id).body_html
    assert html == "<p><del>Tuesday</del> Wednesday</p>\n"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_upgrading_shrinks_articles_that_repeat_a_long_reference(make_app, backend: str) -> None:  # type: ignore[no-untyped-def]
    """Articles saved while every ``[a]`` repeated its definition's whole address stayed
    megabytes of HTML, served to every reader, until edited."""
    from flask_migrate import downgrade, upgrade

    from bastion.models import Article
    from tests.factories import OldArticleFactory

    address = "https://example.org/" + "a" * 1000
    source = f"[a]: {address}\n\n" + "[a] " * 5_000
    amplified = "<p>" + f'<a href="{address}">a</a> ' * 5_000 + "</p>\n"
    app = make_app(backend=backend, migrate=True)
    with app.app_context():
        downgrade(revision="0013_rerender_strikethrough")
        old = OldArticleFactory(body_md=source, body_html=amplified)
        db.session.commit()
        article_id = old.id
        db.session.remove()
        upgrade(revision="0014_rerender_bounded_references")
        html = db.session.get(Article, article_id).body_html
    assert len(html) < 4 * len(source) < len(amplified)
    assert html.count(address) >= 2


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_upgrading_gives_stored_articles_images_their_size(make_app, backend: str) -> None:  # type: ignore[no-untyped-def]
    """Articles saved before images carried their size kept pages that jump as images load."""
    from flask_migrate import downgrade, upgrade

    from bastion.models import Article, Upload
    from tests.factories import OldArticleFactory

    upload_id = "ab" * 16
    source = f"![lead](/uploads/{upload_id})\n\n![unknown](/uploads/{'cd' * 16})"
    app = make_app(backend=backend, migrate=True)
    with app.app_context():
        downgrade(revision="0015_audit_no_truncate")
        old = OldArticleFactory(body_md=source, body_html="<p>old</p>\n")
        db.session.add(
            Upload(id=upload_id, owner_id=old.author_id, article_id=old.id, kind="article",
                   content_type="image/png", size=100, width=1200, height=800,
                   storage_name=f"{upload_id}.png")
        )
        db.session.commit()
        article_id = old.id
        db.session.remove()
        upgrade(revision="0016_rerender_image_sizes")
        html = db.session.get(Article, article_id).body_html
    assert f'<img src="/uploads/{upload_id}" alt="lead" width="1200" height="800">' in html
    assert f'<img src="/uploads/{"cd" * 16}" alt="unknown" loading="lazy" decoding="async">' in html


SEARCH_INDEXES = ("ix_articles_search", "ix_articles_search_words")


def _search_indexes() -> dict[str, bool]:
    """PostgreSQL: which of the two search indexes exist, and whether each is valid."""
    rows = db.session.execute(text(
        "SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " WHERE c.relname = ANY(:names) AND pg_table_is_visible(c.oid)"
    ), {"names": list(SEARCH_INDEXES)})
    return dict(rows.all())


# A search as the release before 0017 ran it (bastion.content.search then): the expression
# of its index, a prefix ``tsquery``, and sequential scans off (its ``through_index``).
PREVIOUS_RELEASE_SEARCH = text(
    "SELECT id FROM articles WHERE to_tsvector('simple'::regconfig, "
    "(title::text || ' '::text) || body_md) @@ CAST(:q AS tsquery)"
)


def _previous_release_search(query: str) -> tuple[int, str]:
    """PostgreSQL: how many articles the previous release's search finds, and its plan."""
    db.session.execute(text("SET LOCAL enable_seqscan = off"))
    found = len(db.session.execute(PREVIOUS_RELEASE_SEARCH, {"q": query}).all())
    plan = "\n".join(db.session.scalars(
        text(f"EXPLAIN {PREVIOUS_RELEASE_SEARCH.text}"), {"q": query}
    ))
    db.session.rollback()
    return found, plan


@pytest.mark.asvs("V1.1.1")
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_upgrading_folds_stored_articles_for_search_and_downgrading_undoes_it(  # type: ignore[no-untyped-def]
    make_app, backend: str
) -> None:
    """Articles saved before search folded case and compatibility forms were found only as
    written: "STRASSE" never found "Straße", nor "bastion" a title in full-width letters."""
    from flask_migrate import downgrade, upgrade
    from sqlalchemy import inspect

    from bastion.content.services import list_articles
    from bastion.models import Article
    from tests.factories import OldArticleFactory

    before = "0016_rerender_image_sizes"
    stored = {  # title, body -> the words the upgrade stores
        ("Straße", "Über \uff22\uff41\uff53\uff54\uff49\uff4f\uff4e, *über*"):
            "strasse über bastion, *über*",
        ("Notes", "The \ufb01le system"): "notes the file system",
        ("Empty", ""): "empty",
    }
    app = make_app(backend=backend, migrate=True)
    with app.app_context():
        downgrade(revision=before)
        ids = {OldArticleFactory(title=t, body_md=b).id: words for (t, b), words in stored.items()}
        db.session.remove()
        for _ in range(2):  # upgraded, downgraded with its rows, and upgraded again
            upgrade()
            words = dict(db.session.execute(select(Article.id, Article.search_words)).all())
            assert words == ids
            found = {q: {a.title for a in list_articles(None, query=q).items}
                     for q in ("STRASSE bastion", "file", "EMPTY")}
            assert found == {"STRASSE bastion": {"Straße"}, "file": {"Notes"}, "EMPTY": {"Empty"}}
            if backend == "postgresql":
                # The previous release still serves while the upgrade runs: its searches
                # keep their index until the next release drops it.
                assert _search_indexes() == {"ix_articles_search": True,
                                             "ix_articles_search_words": True}
                found, plan = _previous_release_search("'notes':*")
                assert found == 1
                assert "ix_articles_search " in plan and "Seq Scan" not in plan, plan
            db.session.remove()
            downgrade(revision=before)
            columns = {c["name"] for c in inspect(db.engine).get_columns("articles")}
            assert "search_words" not in columns
            assert db.session.scalar(text("SELECT count(*) FROM articles")) == len(stored)
            if backend == "postgresql":
                assert _search_indexes() == {"ix_articles_search": True}
            db.session.remove()
        upgrade()


@pytest.mark.asvs("V1.1.1")
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_upgrading_stores_idn_domains_in_ace_form_and_never_merges_accounts(  # type: ignore[no-untyped-def]
    make_app, backend: str, capfd: pytest.CaptureFixture[str]
) -> None:
    """Addresses were stored with the domain as typed, so one mailbox could hold an account
    per spelling. The rewrite must not break the unique index, nor pick one of those
    accounts: rows sharing a canonical address stay as they are, and are named in the log."""
    from flask_migrate import downgrade, upgrade

    from bastion.auth.services import find_user_by_email
    from bastion.models import User
    from tests.factories import UserFactory

    stored = {
        "carol": "carol@bücher.example",  # alone: rewritten
        "dave-ace": "dave@xn--bcher-kva.example",  # already canonical ...
        "dave-utf8": "dave@bücher.example",  # ... so this one cannot be rewritten
        "erin-a": "erin@bücher.example",  # two spellings, neither canonical:
        "erin-b": "erin@b\u00fccher\u3002example",  # which keeps the address is not ours to say
        "frank": "frank@example.org",
        "gina": "gina@xn--zz.example",  # not valid IDNA: its own canonical form
    }
    app = make_app(backend=backend, migrate=True)
    with app.app_context():
        downgrade(revision="0009_comment_edited_at")
        ids = {name: UserFactory(username=name, email=email).id for name, email in stored.items()}
        db.session.remove()
        capfd.readouterr()
        upgrade()
        emails = {name: db.session.get(User, ident).email for name, ident in ids.items()}
        found = {spelling: getattr(find_user_by_email(spelling), "username", None)
                 for spelling in ("dave@bücher.example", "dave@xn--bcher-kva.example",
                                  "erin@bücher.example", "carol@bücher.example")}
    assert emails == {**stored, "carol": "carol@xn--bcher-kva.example"}
    assert found == {"dave@bücher.example": "dave-utf8", "dave@xn--bcher-kva.example": "dave-ace",
                     "erin@bücher.example": "erin-a", "carol@bücher.example": "carol"}
    warnings = [line for line in capfd.readouterr().err.splitlines()
                if "0010_email_idna_domains: users" in line]
    assert len(warnings) == 2
    dave = f"users {ids['dave-ace']} (dave-ace), {ids['dave-utf8']} (dave-utf8) hold one email"
    erin = f"users {ids['erin-a']} (erin-a), {ids['erin-b']} (erin-b) hold one email"
    assert dave in warnings[0] + warnings[1] and erin in warnings[0] + warnings[1]
    assert "@" not in "".join(warnings)  # ids and usernames only: no addresses in logs


@pytest.mark.asvs("V2.3.2")
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_upgrading_retires_the_names_of_accounts_deleted_before(  # type: ignore[no-untyped-def]
    make_app, backend: str
) -> None:
    """Before 0018 a deleted account's username was free at once for anyone to register.
    The upgrade retires every name the trail's ``user.deleted`` rows give, but one an
    account holds again by then (it is retired when that account is deleted)."""
    from flask_migrate import downgrade, upgrade
    from sqlalchemy import inspect

    from bastion.auth.services import username_taken
    from bastion.models import RetiredUsername
    from bastion.security import audit
    from tests.factories import UserFactory

    before = "0017_article_search_words"
    app = make_app(backend=backend, migrate=True)
    with app.app_context():
        downgrade(revision=before)
        UserFactory(username="back")  # deleted once, and registered again since
        for name in ("gone", "back", "gone"):
            last = audit.record("user.deleted", target_user_id=7, details={"username": name})
        # Written by this release (upgrading again after a downgrade): never confirmed,
        # the name stays free; confirmed, it is retired.
        audit.record("user.deleted", details={"username": "squat", "confirmed": False})
        kept = audit.record("user.deleted", details={"username": "kept", "confirmed": True})
        for details in ({"username": 12}, {"username": "x" * 33}, {}):  # no username of ours
            audit.record("user.deleted", details=details)
        audit.record("account.unconfirmed_released", target_user_id=8, details={"by": "sign-up"})
        db.session.remove()
        for _ in range(2):  # upgraded, downgraded, and upgraded again
            upgrade()
            retired = dict(db.session.execute(
                select(RetiredUsername.username, RetiredUsername.retired_at)).all())
            assert retired == {"gone": last.created_at, "kept": kept.created_at}
            assert username_taken("GONE") and username_taken("back")
            assert not username_taken("fresh") and not username_taken("squat")
            db.session.remove()
            downgrade(revision=before)
            assert "retired_usernames" not in inspect(db.engine).get_table_names()
            db.session.remove()
        upgrade()


@pytest.mark.asvs("V2.3.2")
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_upgrading_again_leaves_a_released_name_free(make_app, backend: str) -> None:  # type: ignore[no-untyped-def]
    """Downgrading below 0018 and upgrading again retired a name an operator had given back
    (``users release-username``) and no one had registered since: its deletion's row came
    back, the release after it was not read. A deletion after the release retires it."""
    from flask_migrate import downgrade, upgrade

    from bastion.admin.deletion import delete_user, release_username
    from bastion.auth.services import username_taken
    from bastion.models import RetiredUsername
    from tests.factories import UserFactory

    app = make_app(backend=backend, migrate=True)
    with app.app_context():
        boss = UserFactory(username="boss", role_name="admin")
        for name in ("mistake", "twice", "kept"):
            delete_user(boss, UserFactory(username=name), confirmation=name)
        why = "Deleted by mistake; the holder came back."
        for name in ("mistake", "twice"):
            assert release_username(name, reason=why, details={}) == name
        delete_user(boss, UserFactory(username="twice"), confirmation="twice")  # since
        db.session.remove()
        downgrade(revision="0017_article_search_words")
        db.session.remove()
        upgrade()
        retired = set(db.session.scalars(select(RetiredUsername.username)))
        assert retired == {"twice", "kept"}
        assert not username_taken("mistake")


@pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression-based")
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_every_migration_downgrades_and_upgrades_again(make_app, backend: str) -> None:  # type: ignore[no-untyped-def]
    """A release is rolled back with `flask db downgrade`: every step down must work, and the
    way back up must rebuild the same schema (the roles included)."""
    from flask_migrate import downgrade, upgrade
    from sqlalchemy import inspect

    app = make_app(backend=backend, migrate=True)
    with app.app_context():
        downgrade(revision="base")
        with db.engine.connect() as conn:
            assert set(inspect(conn).get_table_names()) <= {"alembic_version"}
        upgrade()
        with db.engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), db.metadata) == []
        assert set(db.session.scalars(select(Role.name))) == {"viewer", "editor", "admin"}


@pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression-based")
def test_an_autogenerated_revision_runs_and_is_named_by_its_id(make_app, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`flask db migrate --rev-id 0012_topic` wrote the models' own datetime type as
    ``bastion.models.base.UTCDateTime(...)`` without an import (the new revision failed with
    a NameError) into a file named ``0012_topic_<message>.py``."""
    import shutil
    from pathlib import Path

    from flask_migrate import migrate, upgrade
    from sqlalchemy import Column, Integer, Table, inspect

    import bastion
    from bastion.models.base import UTCDateTime

    directory = tmp_path / "migrations"
    shutil.copytree(Path(bastion.__file__).parent / "migrations", directory,
                    ignore=shutil.ignore_patterns("__pycache__"))
    app = make_app(backend="sqlite", migrate=True)
    probe = Table("probe_rows", db.metadata, Column("id", Integer, primary_key=True),
                  Column("seen_at", UTCDateTime(), nullable=False))
    try:
        with app.app_context():
            migrate(directory=str(directory), message="probe rows", rev_id="9999_probe")
            written = (directory / "versions" / "9999_probe.py").read_text(encoding="utf-8")
            assert "sa.DateTime(timezone=True)" in written
            assert "bastion.models" not in written
            upgrade(directory=str(directory))
            assert "probe_rows" in inspect(db.engine).get_table_names()
    finally:
        db.metadata.remove(probe)
