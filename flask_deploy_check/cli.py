"""``flask security check``: the Flask counterpart of Django's ``check --deploy``.

Registered as a Flask CLI plugin through the ``flask.commands`` entry point, so it
works on any app given with ``--app``; apps may also ``app.cli.add_command(security)``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import AppGroup, ScriptInfo

from flask_deploy_check.deps import DEFAULT_TIMEOUT, DepsOptions
from flask_deploy_check.findings import Severity
from flask_deploy_check.registry import all_specs, printable
from flask_deploy_check.report import render_json, render_text
from flask_deploy_check.runner import run_checks

security = AppGroup("security", help="Security checks for a Flask application.")


class AppLoadError(click.ClickException):
    """The app could not be imported or created; exit 2 like other usage problems."""

    exit_code = 2


def load_app_as_deployed() -> Flask:
    """The app as a WSGI server (gunicorn) would load it.

    When the Flask CLI loads an app it overwrites ``app.debug`` with FLASK_DEBUG, which
    would hide a ``DEBUG = True`` in the app's own settings; so, when this command is the
    one loading the app (the usual case for a plugin command), that override is skipped.
    """
    if current_app:
        app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
        return app
    info = click.get_current_context().ensure_object(ScriptInfo)
    info.set_debug_flag = False
    try:
        return info.load_app()
    except Exception as exc:  # the app refusing to start is a result, not a crash
        raise AppLoadError(f"could not load the application: {load_failure(exc)}") from exc
    except SystemExit as exc:
        # Even sys.exit(0): nothing was checked, and a CI gate must not read that as a pass.
        raise AppLoadError(
            f"could not load the application: it called sys.exit({exc.code!r}) while loading"
        ) from exc


def load_failure(exc: Exception) -> str:
    """Why the app did not load, without a traceback or raw control characters.

    Flask's NoAppException for an ImportError raised inside the app's module carries the
    whole formatted traceback in its message; the ImportError itself names what is missing.
    A message of several lines (an app listing each bad setting) keeps its lines.
    """
    text, cause = str(exc), exc.__context__
    if isinstance(cause, ImportError) and "Traceback (most recent call last)" in text:
        text = f"{text.splitlines()[0].rstrip(':')}: {type(cause).__name__}: {cause}"
    lines = "\n".join(printable(line) for line in text.splitlines())
    return f"{type(exc).__name__}: {lines}" if lines else type(exc).__name__


def emit(text: str, *, color: bool | None = None) -> None:
    """Print a report or listing; a closed standard output or a full disk is an error message
    (exit 1), not a listing that exits 0 having written nothing, or a traceback. A reader
    that stopped early (``| head``) is left to click, which exits 1 quietly."""
    if sys.stdout is None:
        raise click.ClickException("standard output is closed: nowhere to write the output.")
    try:
        click.echo(text, color=color)
    except OSError as exc:
        if exc.errno == errno.EPIPE:
            raise
        raise click.ClickException(f"could not write the output: {exc.strerror or exc}") from exc


def use_colour() -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (no-color.org)."""
    return sys.stdout is not None and sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def _validate_ids(
    ctx: click.Context, param: click.Parameter, value: tuple[str, ...]
) -> tuple[str, ...]:
    """Reject unknown ids early: a typo would otherwise silence nothing."""
    known = {spec.id for spec in all_specs()}
    unknown = sorted(set(value) - known)
    if unknown:
        raise click.BadParameter(f"unknown check id(s): {', '.join(unknown)}")
    return value


@security.command("check", with_appcontext=False)
@click.option("--deploy", is_flag=True, help="Also run the deployment-only checks.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Output format; json is stable for CI (schema.json).",
)
@click.option("--deps", is_flag=True, help="Audit installed distributions with pip-audit.")
@click.option(
    "--fail-level",
    type=click.Choice(["warning", "error"]),
    default="error",
    show_default=True,
    help="Exit non-zero when a finding at or above this severity exists.",
)
@click.option(
    "--ignore",
    multiple=True,
    metavar="ID",
    callback=_validate_ids,
    help="Silence a check id (repeatable); see also the DEPLOY_CHECK_SILENCED config key.",
)
@click.option(
    "--vuln-db",
    # Must exist: a mistyped path in CI would otherwise end as a mere warning (W504), and
    # the dependency audit would pass without having read a single advisory.
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="FLASK_SECURITY_VULN_DB",
    help="Local OSV JSON file to use instead of the online vulnerability service.",
)
@click.option(
    "--vuln-url",
    envvar="FLASK_SECURITY_VULN_URL",
    metavar="URL",
    help="OSV query endpoint (a mirror) instead of the public OSV API.",
)
@click.option(
    "--deps-timeout",
    type=click.FloatRange(min=0.1),
    default=DEFAULT_TIMEOUT,
    show_default=True,
    help="Seconds to wait for the vulnerability service.",
)
def check_command(
    deploy: bool,
    output_format: str,
    deps: bool,
    fail_level: str,
    ignore: tuple[str, ...],
    vuln_db: Path | None,
    vuln_url: str | None,
    deps_timeout: float,
) -> None:
    """Inspect configuration, live responses and (--deps) dependencies.

    Whatever the app prints while it loads or answers the probes goes to stderr:
    stdout carries only the report, so ``--format json`` stays parseable.
    """
    deps_options = DepsOptions(vuln_db, vuln_url, deps_timeout) if deps else None
    with contextlib.redirect_stdout(sys.stderr):
        app = load_app_as_deployed()
        with app.app_context():
            report = run_checks(app, deploy=deploy, deps=deps_options, ignore=ignore)
    level = Severity.from_label(fail_level)
    if output_format == "json":
        emit(render_json(report, level))
    else:
        colour = use_colour()
        emit(render_text(report, level), color=colour)
    if report.failed(level):
        click.get_current_context().exit(1)


@security.command("list", with_appcontext=False)
def list_command() -> None:
    """List every check id with its severity, mode and title."""
    for spec in all_specs():
        mode = "deploy" if spec.deploy else spec.kind
        emit(f"{spec.id}  {spec.severity.label:<7}  {mode:<6}  {spec.title}")
