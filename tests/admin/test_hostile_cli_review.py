"""Attacks on the operator commands and the user-management rules behind them."""

from __future__ import annotations

import csv
import io
import json
import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from bastion.admin import audit_log
from bastion.admin import services as admin
from bastion.extensions import db
from bastion.models import AuditEvent, User
from bastion.security import audit
from tests.factories import UserFactory
from tests.support.roles import client_for


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
         "--password", "tangerine-orbit-lattice-93"],
    ]  # fmt: skip
    for args in commands:
        result = runner.invoke(args=args)
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
