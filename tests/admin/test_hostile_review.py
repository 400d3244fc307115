"""Attacks on the admin area and the operator commands that earlier reviews let through."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import orjson
import pytest
from flask import Flask
from sqlalchemy import delete, func, select, update

from bastion.extensions import db
from bastion.models import AuditEvent, User
from bastion.security import audit
from tests.factories import UserFactory
from tests.support.accounts import Outbox
from tests.support.roles import client_for


def _rows(html: str) -> int:
    return html.count("<tr>") - 1  # minus the header row


@pytest.mark.asvs("V16.2.1", "V16.4.2")
def test_an_all_digit_username_cannot_hide_its_events_behind_another_id(app: Flask) -> None:
    # Usernames may be all digits: an attacker named after a victim's id ("002" here) once
    # had the filter read their name as that id, showing the victim's events, not theirs.
    boss = UserFactory(role_name="admin")
    victim = UserFactory()
    attacker = UserFactory(username=f"{victim.id:03d}")
    audit.record("login.failure", target_user_id=attacker.id, details={"who": "attacker"})
    audit.record("login.success", actor_id=victim.id, target_user_id=victim.id)
    client = client_for(app, boss)

    html = client.get(f"/admin/audit?user={attacker.username}").get_data(as_text=True)

    assert "attacker" in html
    assert "login.success" in html  # the digits are still an id as well: both are shown
    assert _rows(html) == 2
    by_id = client.get(f"/admin/audit?user={attacker.id}").get_data(as_text=True)
    assert _rows(by_id) == 1 and "attacker" in by_id
    nobody = client.get("/admin/audit?user=987654321").get_data(as_text=True)
    assert "No events match these filters." in nobody


@pytest.mark.asvs("V16.4.2")
@pytest.mark.parametrize(
    "statement",
    [
        update(AuditEvent).values(event="login.success"),
        delete(AuditEvent),
        update(AuditEvent.__table__).values(details={}),
        delete(AuditEvent.__table__).where(AuditEvent.__table__.c.event == "login.failure"),
    ],
    ids=["orm-update", "orm-delete", "table-update", "table-delete"],
)
def test_bulk_statements_cannot_rewrite_the_audit_trail(app: Flask, statement: Any) -> None:
    # Bulk UPDATE/DELETE never flush, so the ORM's append-only hook did not see them and
    # only PostgreSQL's trigger stood in the way (not on SQLite).
    row = audit.record("login.failure", details={"username": "mallory"})

    with pytest.raises(PermissionError, match="append-only"):
        db.session.execute(statement)
    db.session.rollback()

    db.session.expire_all()
    kept = db.session.get(AuditEvent, row.id)
    assert kept is not None
    assert (kept.event, kept.details) == ("login.failure", {"username": "mallory"})
    assert db.session.scalar(select(func.count(AuditEvent.id))) == 1
    # Other tables' bulk statements are untouched by the rule.
    db.session.execute(update(User).where(User.id == -1).values(bio=""))
    db.session.commit()


HIDDEN = "\u202e\u200b\U000e0041\u2028"  # bidi override, zero-width space, tag, line separator


@pytest.mark.asvs("V16.4.1", "V16.2.1")
def test_csv_export_writes_invisible_characters_from_anonymous_input_as_escapes(
    app: Flask,
) -> None:
    # Anyone may post a CSP report, and its fields land in the trail. A bidi override in
    # one made the exported cell read differently in a spreadsheet from what was stored.
    anonymous = app.test_client()
    report = {"csp-report": {"violated-directive": f"img-src{HIDDEN}'self' by admin"}}
    resp = anonymous.post(
        "/csp-report", data=orjson.dumps(report), content_type="application/csp-report"
    )
    assert resp.status_code == 204
    audit_row = db.session.scalar(select(AuditEvent).where(AuditEvent.event == "csp.report"))
    assert audit_row is not None and HIDDEN in audit_row.details["violated-directive"]
    client = client_for(app, UserFactory(role_name="admin"))

    resp = client.get("/admin/audit.csv?event=csp.report")

    body = resp.get_data(as_text=True)
    assert resp.status_code == 200
    assert not any(char in body for char in HIDDEN)
    (row,) = list(csv.DictReader(io.StringIO(body)))
    assert "\\u202e\\u200b\\udb40\\udc41\\u2028" in row["details"]
    assert json.loads(row["details"]) == audit_row.details  # still the same JSON


@pytest.mark.asvs("V16.4.1", "V3.2.2")
def test_the_audit_page_shows_details_as_sent_and_invisible_characters_as_escapes(
    app: Flask,
) -> None:
    """The page read every '<' and accented letter as a JSON escape (\\u003cscript\\u003e):
    an admin reading a CSP report could not see what was sent. Now the markup is HTML-escaped
    text, letters are themselves, and only invisible characters are escapes."""
    planted = f"<script>alert(1)</script> caf\u00e9 {HIDDEN}"
    audit.record("csp.report", details={"blocked-uri": planted})
    client = client_for(app, UserFactory(role_name="admin"))

    html = client.get("/admin/audit?event=csp.report").get_data(as_text=True)

    assert "&lt;script&gt;alert(1)&lt;/script&gt; caf\u00e9" in html
    assert "<script>alert" not in html
    assert "\\u003c" not in html
    assert not any(char in html for char in HIDDEN)
    assert "\\u202e\\u200b\\udb40\\udc41\\u2028" in html


@pytest.mark.asvs("V16.4.1")
def test_csv_cells_show_control_characters_from_headers_as_escapes() -> None:
    from bastion.admin.audit_log import csv_cell

    # A user agent is decoded as Latin-1: C1 controls (here NEL and CSI) get through.
    assert csv_cell("Mozilla\x85\x9b2J") == "Mozilla\\u0085\\u009b2J"
    assert csv_cell("\u200b=1+1") == "\\u200b=1+1"  # visible, so no longer a hidden prefix
    assert csv_cell("\t=1") == "'\t'=1"  # formulas are still neutralised, after the tab too


@pytest.mark.asvs("V6.4.4")
def test_cli_reset_2fa_finds_the_account_by_email_like_the_other_commands(
    app: Flask, runner: Any
) -> None:
    # ``users disable`` and ``set-role`` take a username or an email; ``reset-2fa`` found
    # the account by email, then refused it: "Type the username ... to confirm".
    target = UserFactory(username="lostkey", email="lost.key@example.org", two_factor=True)
    outbox = Outbox(app)

    result = runner.invoke(
        args=["users", "reset-2fa", "Lost.Key@example.org", "--reason", "Video call, ID checked"]
    )

    assert result.exit_code == 0, result.output
    assert "Two-factor authentication of lostkey is reset" in result.output
    db.session.expire_all()
    assert not db.session.get(User, target.id).has_2fa
    assert outbox.to(target.email)


@pytest.mark.asvs("V16.4.1")
def test_jsonl_export_writes_invisible_characters_as_escapes(app: Flask, runner: Any) -> None:
    # JSON escapes C0 controls by itself, but not C1 controls (CSI is an escape sequence to
    # some terminals) or bidi overrides: a line printed in a terminal showed something else.
    stored = {"ua": f"Mozilla\x85\x9b2J{HIDDEN}"}
    audit.record("csp.report", details=stored)

    result = runner.invoke(args=["audit", "export", "--event", "csp.report", "--format", "jsonl"])

    assert result.exit_code == 0, result.output
    assert result.output.isascii() or result.output.replace("\n", "").isprintable()
    assert not any(char in result.output for char in "\x85\x9b" + HIDDEN)
    (line,) = [json.loads(text) for text in result.output.splitlines()]
    assert line["details"] == stored  # the escaped line decodes to what is stored


@pytest.mark.asvs("V16.3.3")
def test_head_request_on_the_export_is_not_recorded_as_an_export(app: Flask) -> None:
    client = client_for(app, UserFactory(role_name="admin"))

    resp = client.head("/admin/audit.csv")

    assert resp.status_code == 200
    assert resp.headers["Content-Disposition"].startswith('attachment; filename="bastion-audit-')
    exported = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "audit.exported"))
    assert list(exported) == []
    assert client.get("/admin/audit.csv").status_code == 200  # a real download still counts
    exported = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "audit.exported"))
    assert len(list(exported)) == 1


@pytest.mark.asvs("V6.4.4")
def test_a_reset_from_the_command_line_mails_the_link_on_the_public_url(
    app: Flask, runner: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command has no request: its mail lost the link to the password reset page even
    where the site's address is configured."""
    monkeypatch.setitem(app.config, "PUBLIC_URL", "https://bastion-site.org")
    target = UserFactory(username="lostkey2", two_factor=True)
    outbox = Outbox(app)

    result = runner.invoke(args=["users", "reset-2fa", "lostkey2", "--reason", "Video call, ID checked"])

    assert result.exit_code == 0, result.output
    (message,) = outbox.to(target.email)
    text = message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert "https://bastion-site.org/auth/reset\n" in text


# What an anonymous visitor can plant in a cell (a User-Agent, a CSP report's field) to start
# a formula in a cell of its own: no quote, so the CSV writer leaves the cell unquoted.
SPLIT_FORMULA = "Mozilla/5.0 x;=cmd|' /C calc'!A0;"
TAB_FORMULA = "curl/8\t+SUM(1,1)"


@pytest.mark.asvs("V1.3.3")
@pytest.mark.parametrize(("delimiter", "locale"), [(";", "Excel, ; as list separator"),
                                                    ("\t", "an import split at tabs")])
def test_csv_export_starts_no_formula_where_a_spreadsheet_splits_the_line(
    app: Flask, delimiter: str, locale: str
) -> None:
    # Excel where ";" is the list separator (German, French, ...) opens a comma file by
    # splitting each line at ";": text after a ";" inside a cell became a cell of its own,
    # and "=cmd|..." there was a formula. Import dialogs split at tabs the same way.
    anonymous = app.test_client()
    report = {"csp-report": {"violated-directive": "img-src", "blocked-uri": "x; @SUM(1,1)"}}
    for host, agent in ((1, SPLIT_FORMULA), (2, TAB_FORMULA)):  # one row per client a minute
        resp = anonymous.post("/csp-report", data=orjson.dumps(report),
                              content_type="application/csp-report",
                              headers={"User-Agent": agent},
                              environ_base={"REMOTE_ADDR": f"203.0.113.{host}"})
        assert resp.status_code == 204
    client = client_for(app, UserFactory(role_name="admin"))

    body = client.get("/admin/audit.csv?event=csp.report").get_data(as_text=True)

    cells = [cell for row in csv.reader(io.StringIO(body), delimiter=delimiter) for cell in row]
    formulas = [cell for cell in cells if cell.lstrip(" ")[:1] in ("=", "+", "-", "@")]
    assert not formulas, f"{locale}: {formulas}"
    (first, second) = list(csv.DictReader(io.StringIO(body)))
    # Still readable as what was sent, the one quote marking where a formula would start.
    assert first["user_agent"] == "Mozilla/5.0 x;'=cmd|' /C calc'!A0;"
    assert second["user_agent"] == "curl/8\t'+SUM(1,1)"
    assert json.loads(first["details"])["blocked-uri"] == "x;' @SUM(1,1)"
