"""Flask-Migrate, set up only when something migrates.

Why: importing Flask-Migrate imports Alembic (with Mako and every dialect's DDL module),
about a fifth of a worker's start-up, and a serving process never migrates. The app gets
two stand-ins that load the real thing on first use:

- ``flask db ...``: a click group that resolves its commands from Flask-Migrate's own;
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
    return app.extensions["migrate"]


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
        load(self._app)  # replaces this group in app.cli with Flask-Migrate's
        from flask_migrate.cli import db as real

        assert isinstance(real, click.Group)
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
