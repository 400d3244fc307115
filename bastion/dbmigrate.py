"""Flask-Migrate, set up only when something migrates.

Why: importing Flask-Migrate imports Alembic (with Mako and every dialect's DDL module),
about a fifth of a worker's start-up, and a serving process never migrates. The app gets
two stand-ins that load the real thing on first use:

- ``flask db ...``: a click group that resolves its commands from Flask-Migrate's own,
  whose database errors end in the one-line message every other command prints;
- ``app.extensions["migrate"]``: what ``flask_migrate.upgrade()`` and friends read when
  called in-process (tests, the bench).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from flask import Flask

from bastion.extensions import db

DIRECTORY = str(Path(__file__).parent / "migrations")


def load(app: Flask) -> Any:
    """Initialise Flask-Migrate on ``app`` (once) and return its config object."""
    current = app.extensions.get("migrate")
    if current is not None and not isinstance(current, _LazyConfig):
        return current
    from flask_migrate import Migrate

    Migrate(app, db, directory=DIRECTORY, render_as_batch=True, compare_type=True)
    app.cli.add_command(_database_group())  # in place of the plain group Migrate added
    return app.extensions["migrate"]


class _MigrateGroup(click.Group):
    """Flask-Migrate's ``db`` group: an unreachable database is a message, not a traceback.

    Flask-Migrate turns Alembic's own errors into a line, but a connection refused (the
    wrong BASTION_DATABASE_URL in a migration job) reached the operator as a traceback.
    """

    def invoke(self, ctx: click.Context) -> Any:
        from sqlalchemy.exc import DBAPIError
        from sqlalchemy.exc import TimeoutError as PoolTimeoutError

        from bastion.cli import database_problem

        try:
            return super().invoke(ctx)
        except (DBAPIError, PoolTimeoutError) as exc:
            raise database_problem(exc, hint=MIGRATION_HINT) from exc


MIGRATION_HINT = "Check BASTION_DATABASE_URL and that the database is reachable."


def _database_group() -> click.Group:
    """Flask-Migrate's own ``db`` group (options, callback, commands) as a
    :class:`_MigrateGroup`; its module-level group is shared, so it is copied, not changed."""
    from flask_migrate.cli import db as real

    assert isinstance(real, click.Group)
    return _MigrateGroup(
        real.name, commands=real.commands, params=real.params, callback=real.callback,
        help=real.help, context_settings=real.context_settings,
    )


class _LazyConfig:
    def __init__(self, app: Flask) -> None:
        self._app = app

    def __getattr__(self, name: str) -> Any:
        return getattr(load(self._app), name)


class _LazyGroup(click.Group):
    def __init__(self, app: Flask) -> None:
        super().__init__("db", help="Database migrations (Flask-Migrate and Alembic).")
        self._app = app

    def _real(self) -> click.Group:
        load(self._app)  # replaces this group in app.cli with Flask-Migrate's (wrapped)
        real = self._app.cli.commands["db"]
        assert isinstance(real, _MigrateGroup)
        return real

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        # The real group parses its own options (--directory, -x) and runs its callback.
        return self._real().make_context(info_name, args, parent=parent, **extra)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return self._real().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return self._real().get_command(ctx, cmd_name)


def init_migrations(app: Flask) -> None:
    app.extensions["migrate"] = _LazyConfig(app)
    app.cli.add_command(_LazyGroup(app))
