"""content: articles keep their words folded for search, so case and width match alike

Search lowered the query and the article with the database's ``lower()``: "STRASSE" never
found "Straße" ("ß" stays), "Bastion" never found it written in full-width letters
(U+FF22...), nor "file" an article that writes it with the ligature U+FB01. Neither
database can fold text the Unicode way on the fly, so each article now stores its words
folded (``articles.search_words``: NFKC and full case folding, each different word once;
``bastion.models.content.search_words``), and the query is folded the same way. This fills
the column for the articles saved before, with the application's own code, and on
PostgreSQL adds a full-text index over the new column (``ix_articles_search_words``).

The full-text index over title and body (``ix_articles_search``) stays: the previous
release searches through it while it still serves, and without it each of its searches
would read every article's body. The next release's migration drops it (add before using,
drop a release later: docs/deployment.md). The new index is built CONCURRENTLY, outside
the migration's transaction (as in 0011): writers are never blocked by the build, and a
build that fails leaves an INVALID index, which running the upgrade again drops and builds
anew.
The column is committed first, before any article's words are worked out: ADD COLUMN
locks the table against readers too until its transaction ends, so the site would show no
article while every one of them was folded. Each article's words are then written and
committed on their own (PostgreSQL), so a second run finds the column and only writes the
words of articles saved meanwhile or not reached.

While the previous release still runs, it keeps working. Its new articles take the
column's server default and its edits keep the words of the text they replaced; search
finds them as they are once they are saved again, or once ``flask --app bastion content
refresh-search`` has run after it stopped. Its searches keep their index. Downgrading
drops the new index and the column; the old index is built again only if it is missing or
INVALID.

Revision ID: 0017_article_search_words
Revises: 0016_rerender_image_sizes
"""
import sqlalchemy as sa
from alembic import op

revision = "0017_article_search_words"
down_revision = "0016_rerender_image_sizes"
branch_labels = None
depends_on = None

# Frozen copies of the indexed expressions, as PostgreSQL writes them back. The upgrade
# keeps OLD_INDEX; the downgrade builds it again only where it is missing or INVALID.
OLD_INDEX = "ix_articles_search"
OLD_DOCUMENT = "to_tsvector('simple'::regconfig, (title::text || ' '::text) || body_md)"
NEW_INDEX = "ix_articles_search_words"
NEW_DOCUMENT = "to_tsvector('simple'::regconfig, search_words)"


def upgrade():
    from bastion.content.stored_html import refresh_search_words

    bind = op.get_bind()
    if "search_words" not in {c["name"] for c in sa.inspect(bind).get_columns("articles")}:
        with op.batch_alter_table("articles", schema=None) as batch_op:
            batch_op.add_column(
                sa.Column("search_words", sa.Text(), server_default="", nullable=False)
            )
    if not _is_postgresql():
        refresh_search_words(bind)
        return
    # Out of the transaction first: ADD COLUMN holds a lock that stops every reader of
    # articles until it commits, and working out every article's words takes a while.
    with op.get_context().autocommit_block():
        refresh_search_words(op.get_bind())  # each write commits alone
        _create_index(NEW_INDEX, NEW_DOCUMENT)
        # OLD_INDEX stays for the previous release's searches; the next release drops it.


def downgrade():
    if _is_postgresql():
        with op.get_context().autocommit_block():
            _create_index(OLD_INDEX, OLD_DOCUMENT)
            op.drop_index(NEW_INDEX, table_name="articles", postgresql_concurrently=True,
                          if_exists=True)
    with op.batch_alter_table("articles", schema=None) as batch_op:
        batch_op.drop_column("search_words")


def _is_postgresql():
    return op.get_bind().dialect.name == "postgresql"


def _create_index(name, document):
    """PostgreSQL: a GIN index over ``document``, built without blocking writes; an
    INVALID leftover of a failed concurrent build is dropped first (IF NOT EXISTS would
    keep it), a valid one is kept."""
    if _invalid_index(name):
        op.drop_index(name, table_name="articles", postgresql_concurrently=True, if_exists=True)
    op.create_index(name, "articles", [sa.text(document)], unique=False,
                    postgresql_using="gin", postgresql_concurrently=True, if_not_exists=True)


def _invalid_index(name):
    """Whether an index called ``name`` on the search path is marked invalid."""
    found = op.get_bind().scalar(
        sa.text("SELECT NOT indisvalid FROM pg_catalog.pg_index "
                "WHERE indexrelid = to_regclass(:name)"),
        {"name": name},
    )
    return bool(found)
