"""``flask --app bastion audit export``: the admin page's audit export, for scripts and archives."""

from __future__ import annotations

from datetime import UTC, date, datetime

import click

from bastion.admin.audit_log import (
    AuditFilter,
    as_user_id,
    export_csv,
    export_jsonl,
    is_inverted,
    match_user,
)
from bastion.admin.services import console_operator
from bastion.cli import DatabaseGroup, require_output, write_output
from bastion.security import audit as audit_trail

audit = DatabaseGroup("audit", help="Read the audit trail.")


class _Moment(click.ParamType["date | datetime"]):
    """An ISO 8601 date (a whole day) or date and time (naive means UTC)."""

    name = "ISO date or datetime"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> date | datetime:
        if isinstance(value, date):
            return value
        text = str(value).strip()
        try:
            # A date first, in any ISO form (2026-01-31, 20260131): read as a datetime, the
            # basic form was midnight, and ``--until 20260131`` left that whole day out.
            moment: date | datetime = date.fromisoformat(text)
        except ValueError:
            try:
                moment = datetime.fromisoformat(text)
            except ValueError:
                self.fail(
                    f"{text!r} is not an ISO date (2026-01-31) or datetime (2026-01-31T12:00).",
                    param,
                    ctx,
                )
        if isinstance(moment, datetime) and moment.tzinfo is not None:  # naive means UTC
            try:
                moment.astimezone(UTC)  # the trail is compared in UTC
            except OverflowError:
                self.fail(f"{text!r} is outside years 1 to 9999 once taken to UTC.", param, ctx)
        return moment


FILTER_MAX = 64
"""Longest --event or --user, as on the admin page: no event name or username is longer, and
SQLite refuses a LIKE pattern past 50,000 bytes (a traceback, not an answer)."""


def _bounded(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    """A usage error (exit 2) for a filter longer than ``FILTER_MAX``."""
    if len(value) > FILTER_MAX:
        raise click.BadParameter(f"at most {FILTER_MAX} characters; no name is longer.")
    return value


@audit.command("export")
@click.option("--since", type=_Moment(), help="From this ISO date or datetime (inclusive).")
@click.option("--until", type=_Moment(), help="Up to this ISO date or datetime (inclusive).")
@click.option(
    "--event",
    "prefix",
    default="",
    callback=_bounded,
    help="Only events whose name starts with this.",
)
@click.option(
    "--user",
    default="",
    callback=_bounded,
    help="Only events by or about this account: an id, or a username (also a deleted one).",
)
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="csv", show_default=True
)
def export(since: date | None, until: date | None, prefix: str, user: str, fmt: str) -> None:
    """Write the audit trail to standard output, oldest first (CSV cells formula-escaped)."""
    prefix = prefix.strip()
    event = prefix if not prefix or prefix.endswith("*") else prefix + "*"
    chosen = AuditFilter(user=user, event=event, since=since, until=until)
    if is_inverted(chosen):
        raise click.UsageError("--since is after --until: no event can match. Swap them?")
    require_output("the export")  # before the audit event: an export that never ran
    # Reading the trail is itself an audited event, as on the admin page.
    details = {k: str(v) for k, v in vars(chosen).items() if v}
    audit_trail.record("audit.exported", details={**details, **console_operator(), "format": fmt})
    who = match_user(chosen.user)
    # Every matching event: an archive cut short at the web download's bound, with exit
    # status 0, would pass for the whole trail.
    for chunk in (export_csv if fmt == "csv" else export_jsonl)(
        chosen, everything=True, who=who
    ):
        write_output(chunk, nl=False, what="the export")
    if not who.named:
        # Status 0 and the output as for an account without events (scripts read those);
        # the note tells a mistyped name from such an account.
        click.echo(unknown_user_note(chosen.user), err=True)


def unknown_user_note(user: str) -> str:
    """The line on standard error for a ``--user`` that names no account."""
    user = user.strip()
    as_id = " or has that id" if as_user_id(user) is not None else ""
    return f"No account, present or deleted, was ever named {user!r}{as_id}; nothing matched."
