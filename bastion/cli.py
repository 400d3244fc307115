"""Command line: ``flask --app bastion <command>``."""

from __future__ import annotations

import errno
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from flask import Flask
from flask.cli import AppGroup, with_appcontext
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from bastion.auth.services import (
    AccountError,
    canonical_email,
    create_user,
    email_local_part_problem,
)

DATABASE_HINT = (
    "Check BASTION_DATABASE_URL, that the database is reachable, and that "
    "`flask --app bastion db upgrade` has run."
)

NOT_UTF8 = ("holds bytes that are not UTF-8 text; check the encoding of the terminal or file "
            "it came from (LANG, LC_ALL).")


def database_problem(
    exc: DBAPIError | PoolTimeoutError, hint: str = DATABASE_HINT
) -> click.ClickException:
    """The message for a database the command could not use (exit 1).

    Unreachable, unopenable or unmigrated is for the operator to fix, not a bug to debug:
    the traceback told them less, and printed the statement besides.
    """
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    text = " ".join(str(cause).split())[:300]  # one line: psycopg adds a second
    return click.ClickException(
        f"cannot use the database: {type(cause).__name__}: {text}\n{hint}"
    )


def require_output(what: str = "the output") -> None:
    """An error (exit 1) when standard output is closed (``>&-``): click.echo then drops
    every line, and a command whose product is its output exited 0 with nothing written."""
    if sys.stdout is None:
        raise click.ClickException(f"standard output is closed: nowhere to write {what}.")


def write_output(text: str, *, nl: bool = True, what: str = "the output") -> None:
    """Write a command's product (a listing, an export, a key) to standard output.

    A closed standard output or a full disk is an error message and exit 1, not exit 0 or
    a traceback. A reader that stopped early (``| head``) is left to click, which exits 1
    quietly.
    """
    require_output(what)
    try:
        click.echo(text, nl=nl)
    except OSError as exc:
        if exc.errno == errno.EPIPE:
            raise
        raise click.ClickException(f"could not write {what}: {exc.strerror or exc}") from exc


def refuse_undecodable(ctx: click.Context) -> None:
    """A usage error (exit 2) for an argument that is not text: bytes that are not UTF-8.

    Python hands such bytes on as lone surrogates (a Latin-1 terminal, a name read from a
    file in another encoding); the database driver, the password hasher and the mailer
    cannot encode them, and the command ended in a traceback instead of naming the argument.
    """
    for param in ctx.command.params:
        value = ctx.params.get(param.name or "")
        for item in value if isinstance(value, tuple | list) else (value,):
            if isinstance(item, str) and not _encodable(item):
                raise click.BadParameter(NOT_UTF8, ctx=ctx, param=param)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class DatabaseCommand(click.Command):
    """A command that uses the database: its errors end it with a message, not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        refuse_undecodable(ctx)
        try:
            return super().invoke(ctx)
        except (DBAPIError, PoolTimeoutError) as exc:
            raise database_problem(exc) from exc


class DatabaseGroup(AppGroup):
    """A command group whose commands are all :class:`DatabaseCommand`."""

    command_class = DatabaseCommand


STORE_HINT = "Check BASTION_REDIS_URL and that Redis is reachable."
STORE_CREDENTIALS_HINT = (
    "Check the user name and password in BASTION_REDIS_URL against the Redis users (its ACL)."
)
STORE_COMMAND_HINT = (
    "Check that the Redis ACL of BASTION_REDIS_URL's user allows the command and its keys "
    "(deploy/redis/users.acl)."
)
STORE_READ_ONLY_HINT = (
    "Check that BASTION_REDIS_URL names the primary Redis, not a read-only replica."
)
STORE_MISCONF_HINT = (
    "Check the disk and the log of the Redis server of BASTION_REDIS_URL: it refuses writes "
    "while it cannot save its snapshots (stop-writes-on-bgsave-error)."
)


def store_problem(exc: Exception) -> click.ClickException:
    """The message for a rate limiter store the command could not use (exit 1), on one
    line: the traceback of a refused connection, password or command told the operator
    less. A refusal by Redis is told apart from a store out of reach: the fix differs."""
    from redis.exceptions import (
        AuthenticationError,
        AuthenticationWrongNumberOfArgsError,
        NoPermissionError,
        ReadOnlyError,
    )

    cause = getattr(exc, "storage_error", None) or exc  # limits' StorageError wraps it
    text = " ".join(str(cause).split())
    if _is_misconf(cause):  # its first sentence says it; the rest is the hint's, at length
        text = text.split(". ", 1)[0]
    text = text[:300].rstrip(".")
    text += "" if text.endswith(("?", "!")) else "."  # Redis' own "...is correct?" keeps its mark
    what, hint = "cannot reach the rate limiter's store", STORE_HINT
    if isinstance(cause, ReadOnlyError):
        what, hint = "the rate limiter's store refused writes", STORE_READ_ONLY_HINT
    elif _is_misconf(cause):
        what, hint = "the rate limiter's store refused writes", STORE_MISCONF_HINT
    elif isinstance(cause, NoPermissionError):
        what, hint = "the rate limiter's store refused the app's command", STORE_COMMAND_HINT
    elif isinstance(cause, AuthenticationError | AuthenticationWrongNumberOfArgsError):
        what = "the rate limiter's store refused the app's credentials"
        hint = STORE_CREDENTIALS_HINT
    return click.ClickException(f"{what}: {type(cause).__name__}: {text} {hint}")


def _is_misconf(exc: BaseException) -> bool:
    """Whether Redis refused a write because it cannot save its snapshots (``MISCONF``,
    with stop-writes-on-bgsave-error): redis-py has no class of its own for it."""
    from redis.exceptions import ResponseError

    return isinstance(exc, ResponseError) and str(exc).startswith("MISCONF ")


@contextmanager
def _store_failures_as_messages() -> Iterator[None]:
    """Turn the store errors of a refused or timed-out connection, and Redis' refusals of
    the app's credentials or commands (its ACL) or of any write (a read-only replica, or a
    server that cannot save: misconfiguration, not a bug), into :func:`store_problem`; any
    other error is a bug, and keeps its traceback."""
    from limits.errors import StorageError
    from redis.exceptions import (
        AuthenticationWrongNumberOfArgsError,
        NoPermissionError,
        ReadOnlyError,
        ResponseError,
    )
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    try:
        yield
    except (
        RedisConnectionError,  # AuthenticationError among them
        RedisTimeoutError,
        NoPermissionError,
        AuthenticationWrongNumberOfArgsError,
        ReadOnlyError,
        StorageError,
    ) as exc:
        raise store_problem(exc) from exc
    except ResponseError as exc:
        if not _is_misconf(exc):
            raise
        raise store_problem(exc) from exc


def guard_limiter_commands() -> None:
    """When the app is created for one of Flask-Limiter's own commands (``limiter clear``),
    let a store it cannot reach, or one that refuses the app's credentials, commands or
    writes, end the command with one line, not a traceback.

    Flask-Limiter's ``limiter`` group is a Flask plugin: Flask finds it before loading the
    app (so a group of Bastion's under that name would never be found), and click has taken
    the command's callback before the app is created (by the command's
    ``with_appcontext``), so callbacks wrapped here would only take effect on a later run.
    The running command's click context is still open: a resource registered on it sees the
    exception the command ends with (click 8.2 and later), as Flask's app context does.
    """
    ctx = click.get_current_context(silent=True)
    if ctx is None or ctx.parent is None:  # gunicorn, tests, a script; no group
        return
    from flask_limiter.commands import cli as limiter_group  # loaded already: a plugin

    if ctx.parent.command is limiter_group:
        ctx.with_resource(_store_failures_as_messages())


def _email(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    """The address by the web forms' rules: one mailbox, no display name, no control or
    line-break characters, so no mail to the account gains a recipient or a header line."""
    import email_validator

    address = canonical_email(value)
    try:
        email_validator.validate_email(address, check_deliverability=False)
    except email_validator.EmailNotValidError as exc:
        raise click.BadParameter("Enter a valid email address.") from exc
    if problem := email_local_part_problem(address):
        raise click.BadParameter(problem)
    return address


def _refuse_password_argument(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> None:
    """A usage error for ``--password``: the command line of a running process is shown to
    every user of the machine (``ps``, ``/proc``) and kept in shell history."""
    if value is not None:
        raise click.BadParameter(
            "a password on the command line is visible to other users (ps) and kept in "
            "shell history; type it at the prompt, or pipe it in with --password-stdin.")


def _password(from_stdin: bool) -> str:
    """The new admin's password: the first line of standard input, or typed twice, hidden."""
    hint = "--password-stdin" if from_stdin else "password"
    try:
        if from_stdin:
            line = sys.stdin.readline() if sys.stdin is not None else ""
            password = line.removesuffix("\n").removesuffix("\r")
        else:
            password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    except click.Abort as exc:
        # Input that is no terminal ran out before the password came twice: a script that
        # piped it without the option, which a bare "Aborted!" did not name. (Ctrl-C is an
        # abort too: click keeps what it stood for as the context.)
        ended = isinstance(exc.__context__, EOFError)
        if ended and sys.stdin is not None and not sys.stdin.isatty():
            click.echo(err=True)  # the prompt's line is left open
            raise click.ClickException(
                "standard input ended before the password was typed twice; a script pipes "
                "it in with --password-stdin.") from None
        raise
    except UnicodeDecodeError as exc:  # a strict UTF-8 reader met other bytes
        raise click.BadParameter(NOT_UTF8, param_hint=hint) from exc
    if not _encodable(password):  # surrogate-escaped bytes (a C or Latin-1 locale)
        raise click.BadParameter(NOT_UTF8, param_hint=hint)
    if not password:
        raise click.BadParameter("no password on standard input.", param_hint=hint)
    return password


@click.command("create-admin", cls=DatabaseCommand)
@click.option("--username", prompt=True)
@click.option("--email", prompt=True, callback=_email)
@click.option("--password-stdin", "password_stdin", is_flag=True,
              help="Read the password from the first line of standard input (for scripts) "
                   "instead of prompting for it (hidden, twice).")
@click.option("--password", hidden=True, expose_value=False, callback=_refuse_password_argument)
@with_appcontext
def create_admin_command(username: str, email: str, password_stdin: bool) -> None:
    """Create an admin account (confirmed, 2FA enrolment required at first sign-in).

    The password is never an argument: the command line is visible to other users.
    """
    from bastion.admin.services import console_operator
    from bastion.security import audit

    password = _password(password_stdin)
    try:
        user = create_user(username, email, password, role="admin", confirmed=True)
    except AccountError as exc:
        raise click.ClickException(str(exc)) from exc
    audit.record(
        "cli.admin_created",
        target_user_id=user.id,
        details={"username": user.username, **console_operator()},
    )
    click.echo(f"Admin {user.username!r} created.")


def _origin(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """The site's address by BASTION_PUBLIC_URL's rules (a usage error otherwise).

    The link is built by appending /setup/<token>: a path, query or fragment (or a
    ``javascript:`` address) made a broken link, printed with exit status 0 and a live token
    spent on it.
    """
    from bastion.config import public_url_problem

    if value is None:
        return None
    origin = value.strip().rstrip("/")
    if problem := public_url_problem(origin):
        raise click.BadParameter(problem.replace("BASTION_PUBLIC_URL", "the address", 1))
    return origin


@click.command("setup-url", cls=DatabaseCommand)
@click.option("--base-url", default=None, callback=_origin,
              help="The site's address (default: BASTION_PUBLIC_URL, else http://127.0.0.1:5000).")
@with_appcontext
def setup_url_command(base_url: str | None) -> None:
    """Print a one-time link that creates the first admin (only while none exists)."""
    from flask import current_app

    from bastion.admin.services import console_operator
    from bastion.auth.services import admin_exists
    from bastion.setup.services import announce_setup_if_needed

    base = base_url or current_app.config.get("PUBLIC_URL") or "http://127.0.0.1:5000"
    # Asked first, outside the announcement's catch-all: a database the command cannot use
    # is the one message every command prints, not "an admin already exists (or ...)".
    if admin_exists():
        raise click.ClickException("An admin already exists; no link issued.")
    if announce_setup_if_needed(base, details=console_operator()) is None:
        raise click.ClickException("The link could not be stored (see above); no link issued.")


def register_commands(app: Flask) -> None:
    from bastion.admin.commands import audit
    from bastion.auth.cli import secret_key, sessions, users
    from bastion.content.commands import content
    from flask_deploy_check.cli import security

    app.cli.add_command(create_admin_command)
    app.cli.add_command(setup_url_command)
    app.cli.add_command(users)
    app.cli.add_command(sessions)
    app.cli.add_command(secret_key)
    app.cli.add_command(audit)
    app.cli.add_command(content)
    if "security" not in app.cli.commands:
        app.cli.add_command(security)
    guard_limiter_commands()
