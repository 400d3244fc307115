"""First-run setup: a one-time link that creates the first admin. No default credentials."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from flask import current_app
from sqlalchemy import select, update

from bastion.auth.services import admin_exists, create_user, refusing_duplicates
from bastion.extensions import db
from bastion.models import SetupToken, User, utcnow
from bastion.models.base import affected_rows
from bastion.security import audit
from bastion.security.tokens import new_token, token_hash


def issue_setup_token(details: Mapping[str, object] | None = None) -> str:
    """Store the hash of a fresh token; the caller shows the token once.

    Audited (never the token): each live link can create an admin, so the trail shows how
    many were handed out, when, and (``details``: ``setup-url``'s operator) by whom.
    """
    token = new_token(32)
    minutes = current_app.config["SETUP_TOKEN_MINUTES"]
    db.session.add(
        SetupToken(token_hash=token_hash(token), expires_at=utcnow() + timedelta(minutes=minutes))
    )
    audit.record("setup.link_issued", details={"minutes": minutes, **(details or {})},
                 commit=False)
    db.session.commit()
    return token


def token_is_valid(token: str) -> bool:
    if len(token) > 128 or admin_exists():
        return False
    row = db.session.scalar(select(SetupToken).where(SetupToken.token_hash == token_hash(token)))
    return row is not None and row.used_at is None and row.expires_at > utcnow()


def create_first_admin(token: str, username: str, email: str, password: str) -> User | None:
    """Consume the token and create the admin in one transaction; None if the token is dead.

    The conditional UPDATE makes the token single-use even when two requests race.
    """
    if not token_is_valid(token):
        return None
    # Every live link, locked in one order before this one is claimed: the end of this
    # function closes all of them, and two requests holding one link each would otherwise
    # wait for each other until PostgreSQL aborted one (SQLite's write lock already
    # serialises them). The second then finds its link used.
    db.session.execute(
        select(SetupToken.id)
        .where(SetupToken.used_at.is_(None))
        .order_by(SetupToken.id)
        .with_for_update()
    )
    now = utcnow()
    claimed = affected_rows(db.session.execute(
        update(SetupToken)
        .where(
            SetupToken.token_hash == token_hash(token),
            SetupToken.used_at.is_(None),
            SetupToken.expires_at > now,
        )
        .values(used_at=now)
    ))
    if claimed != 1:
        db.session.rollback()
        return None
    try:
        user = create_user(username, email, password, role="admin", confirmed=True, commit=False)
        # Every other outstanding setup link dies with the first admin. A sign-up taking the
        # name or address meanwhile is a form error (at the autoflush of this statement or
        # at the commit), and the link (its claim rolled back with the rest) still works.
        with refusing_duplicates(username, email):
            db.session.execute(
                update(SetupToken).where(SetupToken.used_at.is_(None)).values(used_at=now)
            )
            db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    audit.record("setup.admin_created", actor_id=user.id, target_user_id=user.id)
    return user


def serving_with_flask_run() -> bool:
    """True only inside ``flask run``, the development server.

    Flask sets FLASK_RUN_FROM_CLI for every ``flask`` command; going by it minted and
    printed a live link from ``db upgrade``, ``users list`` or a cron job into job logs kept
    and read by others (with a wrong address). gunicorn announces in ``when_ready``.
    """
    import click

    ctx = click.get_current_context(silent=True)
    return ctx is not None and ctx.command.name == "run"


SETUP_HINT = (
    "\n  No admin account exists yet. Print a one-time setup link with\n\n"
    "    flask --app bastion setup-url\n\n"
    "  where the app runs (docker compose exec app ..., kubectl exec ...), or create the\n"
    "  admin there with `flask --app bastion create-admin`. The link is not printed here:\n"
    "  this output is a log that others may read, and the link creates an admin.\n"
)


def announce_setup_if_needed(
    base_url: str = "http://127.0.0.1:5000", *, show_link: bool = True,
    details: Mapping[str, object] | None = None,
) -> str | None:
    """Print a setup link when no admin exists; used when a server starts.

    ``show_link=False`` (a server whose output is collected as a log) prints only how to get
    one, and mints nothing: whoever reads the log must not be able to become the admin.
    """
    import logging
    import sys

    from sqlalchemy.exc import SQLAlchemyError

    try:
        if admin_exists():
            return None
        if not show_link:
            print(SETUP_HINT, file=sys.stderr, flush=True)
            return None
        token = issue_setup_token(details)
    except SQLAlchemyError:
        db.session.rollback()
        logging.getLogger("bastion.setup").warning(
            "database not ready; run `flask --app bastion db upgrade` first"
        )
        return None
    url = f"{base_url.rstrip('/')}/setup/{token}"
    minutes = current_app.config["SETUP_TOKEN_MINUTES"]
    banner = (
        f"\n  No admin account exists yet. Create one within {minutes} minutes at:\n\n"
        f"    {url}\n\n  (single use; or, with this server's settings in .env, run\n"
        f"  `.venv/bin/flask --app bastion create-admin`)\n"
    )
    print(banner, file=sys.stderr, flush=True)
    return url
