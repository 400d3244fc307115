"""``flask --app bastion users list|disable|set-role|reset-2fa|purge-unconfirmed|
retire-deleted|release-username``, ``sessions revoke`` and ``secret-key reseal``.

The rules (last active admin, audit, ending sessions) live in ``bastion.admin.services``,
shared with the admin pages; these commands only find the user and report.
"""

from __future__ import annotations

from datetime import timedelta

import click
from flask import current_app
from sqlalchemy import select

from bastion.admin.deletion import release_username, retire_missed_usernames
from bastion.admin.services import (
    PROMOTION_SIGNS_OUT,
    AdminError,
    UserGoneError,
    console_operator,
    is_promotion,
    reset_two_factor,
    role_changed_text,
    set_disabled,
    set_role,
    sign_out_everywhere,
)
from bastion.auth import recovery_keys, registration, twofactor
from bastion.auth.services import canonical_username, find_login_user, username_problem
from bastion.cli import DatabaseGroup, require_output, write_output
from bastion.extensions import db
from bastion.models import ROLE_NAMES, User

users = DatabaseGroup("users", help="List and manage accounts.")
sessions = DatabaseGroup("sessions", help="Manage sign-in sessions.")
secret_key = DatabaseGroup("secret-key", help="Finish a rotation of BASTION_SECRET_KEY.")


def _user(username: str) -> User:
    user = find_login_user(username)
    if user is None:
        raise click.ClickException(f"No account named {canonical_username(username)!r}.")
    return user


@users.command("list")
def list_users() -> None:
    """One line per account: name, email, role, state."""
    require_output("the list")  # a script would read no lines as "no accounts"
    listed = 0
    for user in db.session.scalars(select(User).order_by(User.username)):
        confirmed = "active" if user.email_confirmed_at else "unconfirmed"
        state = "disabled" if user.disabled_at else confirmed
        twofa = "2fa" if user.has_2fa else "-"
        write_output(f"{user.username}\t{user.email}\t{user.role_name}\t{state}\t{twofa}",
                     what="the list")
        listed += 1
    if not listed:  # on standard error: a script reading the list still gets no lines
        click.echo("No accounts yet (see create-admin or the setup link).", err=True)


# A century: far larger ages overflow the date arithmetic, a traceback instead of an error.
MAX_AGE_HOURS = 100 * 366 * 24


@users.command("purge-unconfirmed")
@click.option("--older-than-hours", type=click.IntRange(min=1, max=MAX_AGE_HOURS), default=None,
              help="Age of the accounts to delete (default and minimum: BASTION_CONFIRM_HOURS).")
@click.option("--dry-run", is_flag=True, help="Only count them.")
def purge_unconfirmed(older_than_hours: int | None, dry_run: bool) -> None:
    """Delete accounts never confirmed, started longer ago than their link lives."""
    link_hours = int(current_app.config["CONFIRM_HOURS"])
    hours = link_hours if older_than_hours is None else older_than_hours
    if hours < link_hours:
        # A younger account's confirmation link still works: its owner may be about to use it.
        raise click.BadParameter(
            f"must be at least BASTION_CONFIRM_HOURS ({link_hours}): younger accounts "
            "can still be confirmed", param_hint="--older-than-hours")
    if dry_run:
        count = registration.count_unconfirmed(timedelta(hours=hours))
        click.echo(f"{count} account(s) never confirmed and older than {hours} hour(s); "
                   "nothing deleted.")
        return
    purged = registration.purge_unconfirmed(timedelta(hours=hours), details=console_operator())
    click.echo(f"Deleted {purged} account(s) never confirmed and older than {hours} hour(s).")


@users.command("retire-deleted")
def retire_deleted() -> None:
    """Retire the usernames of accounts deleted without it (by the previous release during
    a rolling upgrade past migration 0018); safe to run again."""
    retired = retire_missed_usernames(details=console_operator())
    if not retired:
        # Exit 0 all the same: the state asked for holds, so a job run again succeeds.
        click.echo("0 username(s) retired: no deleted account's name is left to retire; "
                   "nothing changed.")
        return
    click.echo(f"Retired {len(retired)} username(s) of deleted accounts: {', '.join(retired)}.")


SHOWN_NAME_MAX = 40  # characters of a refused name the error repeats


def _retirable_name(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    """A usage error for what is no username (a look-alike letter, a zero-width space, a
    typo): no such name is ever retired, and "not retired" with the name printed as typed
    would read, to the operator, as the retired one given back. Spelled in ASCII here, so
    the look-alike shows."""
    if problem := username_problem(value):
        name = canonical_username(value)
        shown = ascii(name[:SHOWN_NAME_MAX]) + ("..." if len(name) > SHOWN_NAME_MAX else "")
        raise click.BadParameter(f"{shown} is no username: {problem} Nothing changed.")
    return value


@users.command("release-username")
@click.argument("username", callback=_retirable_name)
@click.option("--reason", required=True,
              help="Why the name is given back (kept in the audit log).")
def release_username_command(username: str, reason: str) -> None:
    """Give a retired username back, so the next account may register it."""
    try:
        name = release_username(username, reason=reason, details=console_operator())
    except AdminError as exc:
        raise click.ClickException(str(exc)) from exc
    if name is None:
        # The state asked for holds (the name is not retired): exit 0, as ``disable`` does.
        click.echo(f"{canonical_username(username)!r} is not retired; nothing changed.")
        return
    click.echo(f"{name!r} is no longer retired: the next account may register it.")


@users.command("disable")
@click.argument("username")
def disable(username: str) -> None:
    """Disable an account and end all its sessions."""
    user = _user(username)
    if user.disabled_at is not None:
        # Nothing happens and nothing is audited: say so rather than claim sessions ended.
        click.echo(f"{user.username} was already disabled; nothing changed.")
        return
    try:
        set_disabled(None, user, True)
    except AdminError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{user.username} is disabled; all sessions ended.")


@users.command("set-role")
@click.argument("username")
@click.argument("role", type=click.Choice(ROLE_NAMES))
def set_role_command(username: str, role: str) -> None:
    """Change a role; the last active admin cannot be demoted."""
    user = _user(username)
    before = user.role_name
    try:
        set_role(None, user, role)
    except AdminError as exc:
        raise click.ClickException(str(exc)) from exc
    note = f" {PROMOTION_SIGNS_OUT}" if is_promotion(before, role) else ""
    click.echo(f"{role_changed_text(user.username, role)}{note}")


@users.command("reset-2fa")
@click.argument("username")
@click.option(
    "--reason",
    required=True,
    help="How the person's identity was verified out of band (kept in the audit log).",
)
def reset_2fa(username: str, reason: str) -> None:
    """Remove a lost second factor (after verifying the person) and end all their sessions."""
    user = _user(username)
    if not user.has_2fa:
        # Nothing to reset, as ``disable`` of a disabled account: the state asked for holds,
        # so a script run again after a reset succeeds; nothing is audited or mailed.
        click.echo(f"{user.username} has no two-factor authentication; nothing changed.")
        return
    # The process ends when the command returns: send the notice now, not from a thread.
    current_app.config["MAIL_BACKGROUND"] = False
    try:
        # The argument named the account (username or email, as for the other commands);
        # the console has nothing to type again, so the confirmation is the found username.
        done = reset_two_factor(None, user, confirmation=user.username, reason=reason)
    except AdminError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"Two-factor authentication of {user.username} is reset; {done.sessions_ended} "
        f"session(s) ended, {done.tokens_revoked} API token(s) revoked. They were told by mail."
    )


@sessions.command("revoke")
@click.argument("username", required=False)
@click.option("--all", "everyone", is_flag=True, help="End the sessions of every user.")
def revoke(username: str | None, everyone: bool) -> None:
    """End every session, refresh token and personal access token of a user, or of everyone
    with --all."""
    if everyone == bool(username):
        raise click.UsageError("Give a username or --all (not both).")
    users = list(db.session.scalars(select(User))) if everyone else [_user(username or "")]
    total = 0
    # One transaction per user, on purpose: each user's revocation is whole (sessions,
    # tokens, stamp and audit event together), no lock is held on every account at once,
    # and a run cut short has already locked out those it reached; running it again
    # finishes the rest (ending nothing twice).
    for user in users:
        try:
            total += sign_out_everywhere(None, user)
        except UserGoneError as exc:  # deleted since it was looked up: nothing left to end
            if not everyone:
                name = canonical_username(username or "")
                raise click.ClickException(f"No account named {name!r}: deleted meanwhile.") from exc
    who = "all users" if everyone else users[0].username
    # The count is of sessions; the tokens go too, and an operator must not think otherwise.
    click.echo(f"Ended {total} session(s) of {who}. Their API tokens (access, refresh and "
               "personal) no longer work either.")


RESEAL_UNREADABLE = 1  # ``secret-key reseal``: a TOTP secret no configured key opens
RESEAL_CODES_NEED_FALLBACK = 3  # ... recovery codes made under a fallback key are in use


@secret_key.command("reseal")
@click.option("--batch-size", type=click.IntRange(min=1, max=10_000),
              default=twofactor.RESEAL_BATCH, show_default=True,
              help="Accounts changed per transaction.")
def reseal(batch_size: int) -> None:
    """Seal every TOTP secret under the current key, so old keys can leave
    BASTION_SECRET_KEY_FALLBACKS; safe to run again.

    Exits 0 when no second factor needs a fallback key any more, 1 when a TOTP secret
    opens under no configured key, 3 when recovery codes still need a fallback key."""
    from bastion.security import audit

    done = twofactor.reseal_all(batch_size)
    codes = recovery_keys.report()
    audit.record("cli.totp_secrets_resealed", details={
        "resealed": done.resealed, "current": done.current, "changed": done.changed,
        "unreadable": len(done.unreadable),
        "recovery_codes_under_fallbacks": codes.under_fallbacks,
        "recovery_codes_unrecorded": codes.unrecorded,
        "recovery_codes_retired": codes.retired, **console_operator()})
    click.echo(f"{done.resealed} TOTP secret(s) sealed again under the current key, "
               f"{done.current} already were, {done.changed} changed meanwhile.")
    if done.unreadable:
        ids = ", ".join(str(user_id) for user_id in done.unreadable)
        click.echo(f"No configured key opens the TOTP secret of {len(done.unreadable)} "
                   f"account(s), left unchanged (user ids: {ids}): add the key that sealed "
                   "them to BASTION_SECRET_KEY_FALLBACKS and run this again, or reset their "
                   "2FA (users reset-2fa).", err=True)
    fallbacks = bool(current_app.config["SECRET_KEY_FALLBACKS"])
    _report_recovery_codes(codes, fallbacks)
    # A script that runs this and then drops the old key must be able to tell it may not:
    # the secrets above would be lost for good, the codes below would stop working.
    if done.unreadable:
        raise SystemExit(RESEAL_UNREADABLE)
    if fallbacks and (codes.under_fallbacks or codes.unrecorded):
        raise SystemExit(RESEAL_CODES_NEED_FALLBACK)


def _report_recovery_codes(codes: recovery_keys.KeyReport, fallbacks: bool) -> None:
    """Recovery codes cannot be resealed: say which fallback keys they still need."""
    for position, accounts in sorted(codes.by_fallback.items()):
        click.echo(f"{accounts} account(s) hold recovery codes made under fallback key "
                   f"{position} of BASTION_SECRET_KEY_FALLBACKS: they stop working when it "
                   "is dropped; the account page asks their owners to make new ones.",
                   err=True)
    if codes.unrecorded and fallbacks:
        click.echo(f"{codes.unrecorded} account(s) hold recovery codes made before Bastion "
                   "recorded their key: they work only while the key that made them is "
                   "configured (a code used once names its set).", err=True)
    if codes.retired:
        click.echo(f"{codes.retired} account(s) hold recovery codes made under a key that is "
                   "no longer configured: those codes no longer work. Their owners can make "
                   "new ones after signing in with their app, or reset their 2FA "
                   "(users reset-2fa).", err=True)
    if fallbacks and not codes.under_fallbacks and not codes.unrecorded:
        click.echo("No recovery code needs BASTION_SECRET_KEY_FALLBACKS any more (sessions, "
                   "tokens and links from before the rotation do until they expire; see "
                   "docs/authentication.md).")
