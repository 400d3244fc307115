import logging
from collections import Counter
from contextlib import contextmanager
from logging.config import fileConfig

from alembic import context
from alembic.util import CommandError
from flask import current_app

# this is the Alembic Config object, which provides
# access to the values within the .ini file in use.
config = context.config

# Interpret the config file for Python logging.
# This line sets up loggers basically.
fileConfig(config.config_file_name, disable_existing_loggers=False)
logger = logging.getLogger('alembic.env')


def get_engine():
    return current_app.extensions['migrate'].db.engine


def get_engine_url():
    try:
        return get_engine().url.render_as_string(hide_password=False).replace(
            '%', '%%')
    except AttributeError:
        return str(get_engine().url).replace('%', '%%')


# add your model's MetaData object here
# for 'autogenerate' support
# from myapp import mymodel
# target_metadata = mymodel.Base.metadata
config.set_main_option('sqlalchemy.url', get_engine_url())
target_db = current_app.extensions['migrate'].db

# other values from the config, defined by the needs of env.py,
# can be acquired:
# my_important_option = config.get_main_option("my_important_option")
# ... etc.


def get_metadata():
    if hasattr(target_db, 'metadatas'):
        return target_db.metadatas[None]
    return target_db.metadata


OFFLINE_REFUSED = (
    "Bastion's migrations cannot be written out as SQL (--sql): some rewrite stored data "
    "with the application's own code (articles rendered again by the current sanitiser, "
    "addresses normalised), which a script would silently leave out. Run "
    "`flask --app bastion db upgrade` (or downgrade) against the database itself."
)


def refuse_offline_mode():
    """An offline script would lack the data steps, some of them security fixes to stored
    HTML, and crashed with a traceback halfway through writing it; say why, exit 1."""
    raise CommandError(OFFLINE_REFUSED)


def render_item(type_, obj, autogen_context):
    """Write the models' own column types as the plain SQLAlchemy types they store: a
    revision names ``sa.DateTime(timezone=True)``, not ``bastion.models.base.UTCDateTime``
    (which autogenerate wrote without an import, so the new revision failed to run, and
    which would tie old revisions to today's model code)."""
    from bastion.models.base import UTCDateTime

    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


DANGLING_REFERENCES = (
    "The migration left rows that point at rows that do not exist ({found}): SQLite "
    "checked no foreign keys while it ran, as batch mode recreates tables. Fix the "
    "revision; the rows are listed by `PRAGMA foreign_key_check`."
)


def _dangling_references(connection):
    """How many rows of each (table, referenced table) point at a missing row (SQLite)."""
    rows = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
    connection.commit()
    return Counter((row[0], row[2]) for row in rows)


def _set_foreign_keys(connection, on):
    """Set SQLite's foreign-key enforcement on ``connection``, and make sure it took: the
    pragma does nothing inside a transaction, and a batch step that drops a table with
    enforcement on deletes (cascades to) every row that references it."""
    if connection.in_transaction():
        connection.rollback()
    connection.exec_driver_sql(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")
    state = connection.exec_driver_sql("PRAGMA foreign_keys").scalar()
    connection.commit()  # ends SQLAlchemy's autobegun transaction; Alembic begins its own
    if bool(state) != on:
        raise CommandError(f"SQLite refused to turn foreign keys {'on' if on else 'off'}.")


@contextmanager
def sqlite_foreign_keys_off(connection):
    """SQLite: foreign keys off while migrations run, checked and on again afterwards.

    Batch mode changes a SQLite table by creating a new one, copying the rows, dropping the
    old one and renaming: with enforcement on (``bastion.models.sqlite``), the drop would
    delete the rows of every table that references it (ON DELETE CASCADE) or be refused.
    The check afterwards fails loudly on references the migration left pointing nowhere;
    ones that were there before it ran (a database from when SQLite enforced nothing) are
    logged. The connection goes back to the pool with enforcement on again.
    """
    if connection.dialect.name != "sqlite":
        yield
        return
    _set_foreign_keys(connection, on=False)
    try:
        before = _dangling_references(connection)
        if before:
            logger.warning("rows pointing at missing rows before migrating: %s",
                           _describe(before))
        yield
        new = _dangling_references(connection) - before
        if new:
            raise CommandError(DANGLING_REFERENCES.format(found=_describe(new)))
    finally:
        _set_foreign_keys(connection, on=True)


def _describe(references):
    return ", ".join(f"{table} -> {parent}: {count}"
                     for (table, parent), count in sorted(references.items()))


def run_migrations_online():
    """Run migrations in 'online' mode.

    In this scenario we need to create an Engine
    and associate a connection with the context.

    """

    # this callback is used to prevent an auto-migration from being generated
    # when there are no changes to the schema
    # reference: http://alembic.zzzcomputing.com/en/latest/cookbook.html
    def process_revision_directives(context, revision, directives):
        if getattr(config.cmd_opts, 'autogenerate', False):
            script = directives[0]
            if script.upgrade_ops.is_empty():
                directives[:] = []
                logger.info('No changes in schema detected.')

    conf_args = current_app.extensions['migrate'].configure_args
    if conf_args.get("process_revision_directives") is None:
        conf_args["process_revision_directives"] = process_revision_directives
    conf_args.setdefault("render_item", render_item)

    connectable = get_engine()

    with connectable.connect() as connection, sqlite_foreign_keys_off(connection):
        context.configure(
            connection=connection,
            target_metadata=get_metadata(),
            **conf_args
        )

        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    refuse_offline_mode()
else:
    run_migrations_online()
