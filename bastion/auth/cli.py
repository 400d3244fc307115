"""``flask --app bastion users list|disable|set-role`` and ``sessions revoke``."""

from __future__ import annotations

import click
from flask.cli import AppGroup
from sqlalchemy import select

from bastion.auth.services import (
    AccountError,
    canonical_username,
    disable_user,
    find_login_user,
    set_role,
)
from bastion.auth.sessions import revoke_all
from bastion.extensions import db
from bastion.models import ROLE_NAMES, User
from bastion.security import audit

users = AppGroup("users", help="List and manage accounts.")
sessions = AppGroup("sessions", help="Manage sign-in sessions.")


def _user(username: str) -> User:
    user = find_login_user(username)
    if user is None:
        raise click.ClickException(f"No account named {canonical_username(username)!r}.")
    return user


@users.command("list")
def list_users() -> None:
    """One line per account: name, email, role, state."""
    for user in db.session.scalars(select(User).order_by(User.username)):
        confirmed = "active" if user.email_confirmed_at else "unconfirmed"
        state = "disabled" if user.disabled_at else confirmed
        twofa = "2fa" if user.has_2fa else "-"
        click.echo(f"{user.username}\t{user.email}\t{user.role_name}\t{state}\t{twofa}")


@users.command("disable")
@click.argument("username")
def disable(username: str) -> None:
    """Disable an account and end all its sessions."""
    user = _user(username)
    try:
        disable_user(None, user)
    except AccountError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{user.username} is disabled; all sessions ended.")


@users.command("set-role")
@click.argument("username")
@click.argument("role", type=click.Choice(ROLE_NAMES))
def set_role_command(username: str, role: str) -> None:
    """Change a role; the last active admin cannot be demoted."""
    user = _user(username)
    try:
        set_role(None, user, role)
    except AccountError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{user.username} is now {role}.")


@sessions.command("revoke")
@click.argument("username", required=False)
@click.option("--all", "everyone", is_flag=True, help="End the sessions of every user.")
def revoke(username: str | None, everyone: bool) -> None:
    """End every session (and refresh token) of a user, or of everyone with --all."""
    if everyone == bool(username):
        raise click.UsageError("Give a username or --all (not both).")
    users = list(db.session.scalars(select(User))) if everyone else [_user(username or "")]
    total = 0
    for user in users:
        count = revoke_all(user.id)
        total += count
        audit.record("session.revoked_all", target_user_id=user.id,
                     details={"count": count, "via": "cli"})
    who = "all users" if everyone else users[0].username
    click.echo(f"Ended {total} session(s) of {who}.")
