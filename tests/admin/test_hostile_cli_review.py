"""Attacks on the operator commands and the user-management rules behind them."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import click
import pytest
from flask import Flask
from sqlalchemy import select

from bastion import cli
from bastion.admin import audit_log
from bastion.admin import commands as export_commands
from bastion.admin import services as admin
from bastion.extensions import db
from bastion.models import AuditEvent, User
from bastion.security import audit
from bastion.security.passwords import verify_password
from tests.conftest import base_config
from tests.factories import UserFactory
from tests.support.roles import client_for
from tests.support.services import refused_port

PASSPHRASE = "tangerine-orbit-lattice-93"


def _csv_events(output: str) -> list[str]:
    return [row["event"] for row in csv.DictReader(io.StringIO(output))]


def _events(name: str) -> list[AuditEvent]:
    return list(db.session.scalars(select(AuditEvent).where(AuditEvent.event == name)))


# ------------------------------------------------------------------ audit export ---
@pytest.mark.asvs("V16.4.3")
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_cli_export_writes_every_matching_event_not_the_web_download_bound(
    app: Flask, runner: Any, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    # The command is for archives: it stopped at the web download's bound with exit status
    # 0 and no word, so a nightly archive silently lost everything past it.
    monkeypatch.setattr(audit_log, "EXPORT_MAX", 2)
    for i in range(4):
        audit.record("probe.event", details={"i": i})

    result = runner.invoke(args=["audit", "export", "--event", "probe.", "--format", fmt])

    assert result.exit_code == 0, result.output
    if fmt == "csv":
        assert _csv_events(result.output) == ["probe.event"] * 4
    else:
        assert [json.loads(line)["details"]["i"] for line in result.output.splitlines()] == [
            0, 1, 2, 3,
        ]  # fmt: skip
    # The admin page's download keeps its documented bound.
    web = client_for(app, UserFactory(role_name="admin")).get("/admin/audit.csv?event=probe.*")
    assert _csv_events(web.get_data(as_text=True)) == ["probe.event"] * 2


@pytest.mark.asvs("V2.2.1")
def test_cli_export_reads_a_basic_iso_date_as_the_whole_day(app: Flask, runner: Any) -> None:
    # "20260131" is an ISO 8601 date like "2026-01-31", but was read as midnight: --until
    # with it left that whole day out of the export.
    audit.record("probe.today")
    today = datetime.now(UTC).date()

    for written in (today.isoformat(), today.strftime("%Y%m%d")):
        result = runner.invoke(args=["audit", "export", "--event", "probe.", "--until", written])
        assert result.exit_code == 0, result.output
        assert _csv_events(result.output) == ["probe.today"], written


@pytest.mark.asvs("V2.2.3")
@pytest.mark.parametrize(
    ("since", "until"),
    [("2026-02-01", "2026-01-31"), ("2026-01-31T12:00", "2026-01-31T11:59"),
     ("2026-02-01", "2026-01-31T23:59")],
)  # fmt: skip
def test_cli_export_refuses_a_range_that_ends_before_it_starts(
    app: Flask, runner: Any, since: str, until: str
) -> None:
    # Swapped bounds in a script gave an empty archive and exit status 0.
    result = runner.invoke(args=["audit", "export", "--since", since, "--until", until])

    assert result.exit_code == 2
    assert "--since is after --until" in result.output
    assert not _events("audit.exported")
    # One day, or a datetime within it, is a range, not an inverted one.
    for until_ok in ("2026-01-31", "2026-01-31T00:00"):
        ok = runner.invoke(args=["audit", "export", "--since", "2026-01-31", "--until", until_ok])
        assert ok.exit_code == 0, ok.output


# ----------------------------------------------------------------- the last admin ---
def _elsewhere(app: Flask, *changes: tuple[int, str]) -> None:
    """Role changes committed by another request, in its own app context and session."""

    def run() -> None:
        with app.app_context():
            for user_id, role in changes:
                admin.set_role(None, db.session.get(User, user_id), role)
            db.session.remove()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)


@pytest.mark.asvs("V2.3.2", "V8.2.1")
@pytest.mark.parametrize("action", ["disable", "demote"])
def test_a_target_promoted_meanwhile_is_guarded_as_the_last_admin(
    app: Flask, action: str
) -> None:
    # The guard read the target's role from the copy loaded at the start of the request:
    # promoted (and the old admin demoted) since, it was taken for a viewer and the site
    # was left with no active admin.
    old_admin, target = UserFactory(role_name="admin"), UserFactory()
    loaded = db.session.get(User, target.id)
    assert loaded is not None and loaded.role_name == "viewer"
    _elsewhere(app, (target.id, "admin"), (old_admin.id, "editor"))

    def act() -> object:
        if action == "disable":
            return admin.set_disabled(None, loaded, True)
        return admin.set_role(None, loaded, "viewer")

    with pytest.raises(admin.AdminError, match="last active admin"):
        act()

    db.session.expire_all()
    admins = db.session.scalars(
        select(User).where(User.disabled_at.is_(None), User.id.in_([old_admin.id, target.id]))
    )
    assert [u.id for u in admins if u.is_admin] == [target.id]


# -------------------------------------------------------- who acted at the console ---
@pytest.mark.asvs("V16.2.1")
def test_console_changes_name_the_operator_in_the_audit_trail(
    app: Flask, runner: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The console has no site account, so these events had no actor at all: in a team
    # sharing server access the trail could not say who disabled or promoted someone.
    monkeypatch.setenv("LOGNAME", "opsalice")
    monkeypatch.delenv("SUDO_USER", raising=False)
    UserFactory(username="boss", role_name="admin")
    UserFactory(username="target", two_factor=True)
    commands = [
        ["users", "set-role", "target", "editor"],
        ["sessions", "revoke", "target"],
        ["users", "reset-2fa", "target", "--reason", "Video call, ID checked"],
        ["users", "disable", "target"],
        ["audit", "export"],
        ["create-admin", "--username", "second", "--email", "second@example.org",
         "--password-stdin"],
    ]  # fmt: skip
    for args in commands:
        result = runner.invoke(args=args, input=f"{PASSPHRASE}\n")
        assert result.exit_code == 0, (args, result.output)

    names = ("user.role_changed", "user.signed_out_everywhere", "user.2fa_reset",
             "user.disabled", "audit.exported", "cli.admin_created")  # fmt: skip
    for name in names:
        (event,) = _events(name)
        assert event.details["via"] == "cli", name
        assert event.details["operator"] == "opsalice", name

    monkeypatch.setenv("SUDO_USER", "opsbob")
    monkeypatch.setenv("LOGNAME", "root")
    assert runner.invoke(args=["sessions", "revoke", "boss"]).exit_code == 0
    last = _events("user.signed_out_everywhere")[-1]
    assert last.details["operator"] == "opsbob (sudo to root)"


@pytest.mark.asvs("V16.2.1")
def test_admin_page_changes_keep_the_admin_as_actor_without_console_details(
    app: Flask,
) -> None:
    boss, someone = UserFactory(role_name="admin"), UserFactory()
    admin.set_role(boss, someone, "editor")
    (event,) = _events("user.role_changed")
    assert event.actor_id == boss.id
    assert event.details == {"from": "viewer", "to": "editor"}


# ------------------------------------------- a database the command cannot use ---
DATABASE_COMMANDS = [
    ["users", "list"],
    ["users", "disable", "root"],
    ["users", "set-role", "root", "viewer"],
    ["users", "reset-2fa", "root", "--reason", "Video call, ID checked"],
    ["users", "purge-unconfirmed"],
    ["sessions", "revoke", "--all"],
    ["audit", "export"],
    ["uploads", "check"],
    ["create-admin", "--username", "second", "--email", "second@example.org",
     "--password-stdin"],
]  # fmt: skip


@pytest.mark.asvs("V16.5.1", "V16.5.2")
@pytest.mark.parametrize("database", ["unmigrated", "unreachable"])
@pytest.mark.parametrize("args", DATABASE_COMMANDS, ids=" ".join)
def test_a_database_the_command_cannot_use_is_a_message_not_a_traceback(
    tmp_path: Path, database: str, args: list[str]
) -> None:
    # Every command that reads the database ended in a traceback (with the SQL statement)
    # when it was not migrated yet, or not reachable: the operator's first `users list`
    # after a deployment, or with the wrong BASTION_DATABASE_URL.
    from bastion import create_app

    url = (
        f"sqlite:///{tmp_path / 'empty.db'}"
        if database == "unmigrated"
        else f"postgresql+psycopg://bastion@127.0.0.1:{refused_port()}/bastion"
    )
    app = create_app(base_config(tmp_path, url))

    result = app.test_cli_runner().invoke(args=args, input=f"{PASSPHRASE}\n")

    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "cannot use the database: OperationalError:" in result.output
    assert "db upgrade" in result.output
    assert "SELECT" not in result.output and "INSERT" not in result.output


# ----------------------------------------------------- out-of-range option values ---
@pytest.mark.asvs("V2.2.1")
def test_purge_unconfirmed_refuses_an_age_past_any_date(runner: Any) -> None:
    # Hours past the calendar overflowed the date arithmetic: a traceback, not an error.
    stale = UserFactory(username="stale", email_confirmed_at=None).id
    for hours in ("20000000", "9223372036854775808"):
        result = runner.invoke(args=["users", "purge-unconfirmed", "--older-than-hours", hours])
        assert result.exit_code == 2, (hours, result.output)
        assert "--older-than-hours" in result.output
    century = runner.invoke(args=["users", "purge-unconfirmed", "--older-than-hours", "876000"])
    assert century.exit_code == 0, century.output
    assert db.session.get(User, stale) is not None


@pytest.mark.asvs("V2.2.1")
@pytest.mark.parametrize("option", ["--event", "--user"])
def test_cli_export_bounds_its_filters_like_the_admin_page(runner: Any, option: str) -> None:
    # 100,000 characters of --event made SQLite refuse the LIKE pattern: a traceback, and
    # an audit.exported event for an export that never ran.
    result = runner.invoke(args=["audit", "export", option, "x" * 100_000])

    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}': at most 64 characters" in result.output
    assert not _events("audit.exported")
    assert runner.invoke(args=["audit", "export", option, "x" * 64]).exit_code == 0


# ------------------------------------------------ an export that cannot be written ---
def _export_to(stdout: IO[str] | None, monkeypatch: pytest.MonkeyPatch) -> int:
    """``audit export`` through click's own main, writing to ``stdout``; its exit status."""
    monkeypatch.setattr(sys, "stdout", stdout)
    with pytest.raises(SystemExit) as ended:
        export_commands.audit.main(["export"], prog_name="flask audit")
    return int(ended.value.code or 0)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_cli_export_to_a_full_disk_is_an_error_message(
    app: Flask, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # An archive written to a full disk ended in a traceback of click's internals.
    audit.record("probe.event")
    full = open("/dev/full", "w", encoding="utf-8")  # noqa: SIM115
    try:
        status = _export_to(full, monkeypatch)
    finally:
        with contextlib.suppress(OSError):  # what the failed write left in the buffer
            full.close()

    err = capsys.readouterr().err
    assert status == 1
    assert "could not write the export: No space left on device" in err


def test_cli_export_with_standard_output_closed_fails(
    app: Flask, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Started with stdout closed (`>&-`), click.echo dropped every line and the export
    # "succeeded" with exit status 0 and an audit.exported event.
    audit.record("probe.event")

    status = _export_to(None, monkeypatch)

    assert status == 1
    assert "standard output is closed" in capsys.readouterr().err
    assert not _events("audit.exported")


# ------------------------------------------- an admin who cannot sign in is no admin ---
@pytest.mark.asvs("V2.3.2", "V8.2.1")
def test_an_unconfirmed_admin_does_not_stand_in_for_the_last_admin(runner: Any) -> None:
    # An account promoted before confirming its address counted as an active admin: the
    # last admin who could sign in was demoted, and purging the unconfirmed one left none.
    UserFactory(username="root", role_name="admin")
    UserFactory(username="newbie", email_confirmed_at=None)
    assert runner.invoke(args=["users", "set-role", "newbie", "admin"]).exit_code == 0

    for args, action in ((["users", "set-role", "root", "viewer"], "demoted"),
                         (["users", "disable", "root"], "disabled")):  # fmt: skip
        result = runner.invoke(args=args)
        assert result.exit_code == 1, result.output
        assert f"root is the last active admin and cannot be {action}" in result.output

    root = db.session.scalar(select(User).where(User.username == "root"))
    assert root is not None and root.is_admin and root.is_active


# ---------------------------------------------- a password is never an argument ---
def test_create_admin_refuses_a_password_on_the_command_line(runner: Any) -> None:
    # `create-admin --password ...` put the admin's password where every user of the
    # machine reads it (ps, /proc/<pid>/cmdline) and in shell history; it was accepted.
    result = runner.invoke(args=["create-admin", "--username", "ops", "--email",
                                 "ops@example.org", "--password", PASSPHRASE])

    assert result.exit_code == 2, result.output
    assert "Invalid value for '--password'" in result.output
    assert "--password-stdin" in result.output
    assert PASSPHRASE not in result.output
    assert db.session.query(User).count() == 0
    assert not _events("cli.admin_created")


@pytest.mark.parametrize(("args", "typed"), [
    (["--password-stdin"], f"{PASSPHRASE}\n"),  # a script: one line, no confirmation
    (["--password-stdin"], f"{PASSPHRASE}\r\n"),  # written on Windows
    ([], f"{PASSPHRASE}\n{PASSPHRASE}\n"),  # typed at the prompt, twice
])  # fmt: skip
def test_create_admin_reads_the_password_from_stdin_or_the_prompt(
    runner: Any, args: list[str], typed: str
) -> None:
    result = runner.invoke(
        args=["create-admin", "--username", "ops", "--email", "ops@example.org", *args],
        input=typed,
    )

    assert result.exit_code == 0, result.output
    assert PASSPHRASE not in result.output
    ops = db.session.scalar(select(User).where(User.username == "ops"))
    assert ops is not None and ops.is_admin
    assert verify_password(ops.password_hash, PASSPHRASE)


@pytest.mark.parametrize("typed", [b"", b"\n", b"tangerine \xff orbit lattice\n"])
def test_create_admin_refuses_an_empty_or_undecodable_password_on_stdin(
    runner: Any, typed: bytes
) -> None:
    result = runner.invoke(args=["create-admin", "--username", "ops", "--email",
                                 "ops@example.org", "--password-stdin"], input=typed)

    assert result.exit_code == 2, (result.output, result.exception)
    assert "Invalid value for --password-stdin" in result.output
    assert "Traceback" not in result.output
    assert db.session.query(User).count() == 0


def test_a_password_piped_to_the_prompt_says_to_use_password_stdin(runner: Any) -> None:
    # A script that piped the password without --password-stdin met the prompt's
    # confirmation at the end of its input and got "Aborted!": no reason, no way out named.
    result = runner.invoke(args=["create-admin", "--username", "ops", "--email",
                                 "ops@example.org"], input=f"{PASSPHRASE}\n")

    assert result.exit_code == 1, (result.output, result.exception)
    assert "Aborted" not in result.output
    assert "pipes it in with --password-stdin" in result.output
    assert db.session.query(User).count() == 0


def test_a_password_read_as_escaped_bytes_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # Under a C or Latin-1 locale Python reads such bytes as lone surrogates, which the
    # password hasher cannot encode: a traceback instead of naming the problem.
    monkeypatch.setattr(sys, "stdin", io.StringIO("tangerine \udcff orbit lattice\n"))
    with pytest.raises(click.BadParameter, match="not UTF-8"):
        cli._password(from_stdin=True)
