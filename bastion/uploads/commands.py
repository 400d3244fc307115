"""``flask uploads check [--prune]``: compare the store with the database."""

from __future__ import annotations

import time

import click
from flask import current_app

from bastion.cli import DatabaseCommand
from bastion.uploads import bp, storage
from bastion.uploads.cleanup import check_store, still_orphan

bp.cli.help = "Check the image store against the database."


@bp.cli.command("check", cls=DatabaseCommand)
@click.option("--prune", is_flag=True, help="Delete orphan files (rows are never touched).")
@click.option(
    "--min-age",
    type=click.IntRange(min=0),  # a negative age is a typo, not "prune everything now"
    default=3600,
    show_default=True,
    help="Only prune files older than this many seconds, so uploads in flight are spared.",
)
def check_command(prune: bool, min_age: int) -> None:
    """Report files without rows and rows without files; exit 1 when any remain."""
    try:
        report = check_store()
    except OSError as exc:  # BASTION_UPLOAD_DIR a file, unreadable, on a volume gone away
        raise click.ClickException(
            f"cannot read the upload store {current_app.config['UPLOAD_DIR']}: "
            f"{exc.strerror or exc}") from exc
    now = time.time()
    remaining = len(report.missing_files)
    for name in report.missing_files:
        click.echo(f"missing file for row: {name}")
    for path in report.orphan_files:
        try:
            old_enough = now - path.stat().st_mtime >= min_age
        except FileNotFoundError:
            continue  # removed since the scan (its row was deleted meanwhile)
        if prune and old_enough:
            if not still_orphan(path):
                continue  # its row was committed after the listing: in use, not an orphan
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:  # pruned so far stays pruned; this one is still reported
                remaining += 1
                click.echo(f"could not prune orphan file: {path.name}: {exc.strerror or exc}",
                           err=True)
                continue
            click.echo(f"pruned orphan file: {path.name}")
        else:
            remaining += 1
            click.echo(f"orphan file: {path.name}")
    for path in report.foreign:
        click.echo(f"not an upload (left alone): {path.relative_to(storage.root())}")
    if remaining:
        raise SystemExit(1)
    click.echo("Upload store is consistent.")
