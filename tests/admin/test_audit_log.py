"""The audit log viewer: filters, pagination, and a CSV export safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask

from bastion.admin.audit_log import CSV_COLUMNS, csv_cell
from bastion.extensions import db
from bastion.models import AuditEvent, utcnow
from tests.factories import UserFactory
from tests.support.roles import client_for


def _event(name: str, *, days_ago: float = 0, **fields: object) -> AuditEvent:
    row = AuditEvent(event=name, created_at=utcnow() - timedelta(days=days_ago), **fields)
    db.session.add(row)
    db.session.commit()
    return row


@pytest.mark.asvs("V16.2.1")
def test_events_name_their_actor_and_target(app: Flask) -> None:
    """Only ids were shown: the admin had to look each one up in the users list."""
    boss = UserFactory(username="boss", role_name="admin")
    alice = UserFactory(username="alice")
    _event("user.role_changed", actor_id=boss.id, target_user_id=alice.id)
    _event("csrf.failure")
    html = client_for(app, boss).get("/admin/audit").get_data(as_text=True)
    assert f'boss <span class="meta">#{boss.id}</span>' in html
    assert f'alice <span class="meta">#{alice.id}</span>' in html


@pytest.mark.asvs("V1.2.1")
def test_an_address_may_wrap_between_its_groups_and_stays_escaped(app: Flask) -> None:
    """The IP cell allows a break after each colon (``<wbr>``); what the address holds is
    still text, whatever a proxy's header put there."""
    boss = UserFactory(username="boss", role_name="admin")
    _event("csrf.failure", ip="2001:db8::7334")
    _event("csrf.failure", ip="<b>x</b>:<i>")
    _event("csrf.failure", ip=None)
    html = client_for(app, boss).get("/admin/audit").get_data(as_text=True)
    assert '<td class="audit-ip">2001:<wbr>db8:<wbr>:<wbr>7334</td>' in html
    assert '<td class="audit-ip">&lt;b&gt;x&lt;/b&gt;:<wbr>&lt;i&gt;</td>' in html
    assert '<td class="audit-ip">—</td>' in html


@pytest.mark.asvs("V16.2.1", "V16.4.2")
def test_filters_by_user_event_and_time(app: Flask) -> None:
    boss = UserFactory(role_name="admin")
    alice = UserFactory(username="alice")
    _event("login.failure", target_user_id=alice.id, ip="203.0.113.9")
    _event("login.success", actor_id=alice.id, days_ago=3)
    _event("user.role_changed", actor_id=boss.id, target_user_id=alice.id, days_ago=10)
    _event("csrf.failure")
    client = client_for(app, boss)

    def rows(query: str) -> int:
        html = client.get(f"/admin/audit?{query}").get_data(as_text=True)
        return html.count("<tr>") - 1  # minus the header row

    assert rows("user=alice") == 3
    assert rows(f"user={alice.id}&event=login.*") == 2
    assert rows("event=login.failure") == 1
    since = (utcnow() - timedelta(days=5)).date().isoformat()
    assert rows(f"user=alice&since={since}") == 2
    until = (utcnow() - timedelta(days=2)).date().isoformat()
    assert rows(f"user=alice&until={until}") == 2
    assert "No events match these filters." in client.get("/admin/audit?user=nobody").get_data(
        as_text=True
    )
    assert "203.0.113.9" in client.get("/admin/audit?event=login.failure").get_data(as_text=True)


def test_event_wildcards_are_literal(app: Flask) -> None:
    _event("login_failure")  # "_" must not match "." as a LIKE wildcard would
    _event("login.x")
    client = client_for(app, UserFactory(role_name="admin"))
    html = client.get("/admin/audit?event=login_*").get_data(as_text=True)
    assert "login_failure" in html
    assert "<code>login.x</code>" not in html


@pytest.mark.asvs("V2.2.1")
@pytest.mark.parametrize("query", ["since=yesterday", "until=2026-13-45", "user=" + "x" * 100])
def test_bad_filters_are_a_clear_400(app: Flask, query: str) -> None:
    client = client_for(app, UserFactory(role_name="admin"))
    resp = client.get(f"/admin/audit?{query}")
    assert resp.status_code == 400
    assert "Check the filters" in resp.get_data(as_text=True)


@pytest.mark.asvs("V2.2.1")
@pytest.mark.parametrize(
    "query",
    ["user=%C2%B2", "user=%E2%91%A0", "user=%00", "event=%00", "event=login%00*"],
    ids=["superscript-two", "circled-one", "user-nul", "event-nul", "prefix-nul"],
)
def test_odd_user_and_event_filters_match_nothing_instead_of_failing(
    app: Flask, query: str
) -> None:
    # "²" and "①" pass str.isdigit() but not int(); PostgreSQL refuses NUL in text. No
    # account or event has such a name, so these filters simply match no event.
    _event("login.failure", actor_id=UserFactory().id)
    client = client_for(app, UserFactory(role_name="admin"))
    page = client.get(f"/admin/audit?{query}")
    assert page.status_code == 200
    assert "No events match these filters." in page.get_data(as_text=True)
    export = client.get(f"/admin/audit.csv?{query}")
    assert export.status_code == 200
    assert export.get_data(as_text=True).splitlines() == [",".join(CSV_COLUMNS)]


@pytest.mark.asvs("V2.2.1")
def test_until_the_last_date_there_is_means_no_upper_bound(app: Flask, runner: Any) -> None:
    _event("login.failure")
    _event("login.failure", days_ago=400)
    client = client_for(app, UserFactory(role_name="admin"))
    query = "event=login.failure&until=9999-12-31"
    page = client.get(f"/admin/audit?{query}")
    assert page.status_code == 200
    assert page.get_data(as_text=True).count("<code>login.failure</code>") == 2
    export = client.get(f"/admin/audit.csv?{query}")
    assert export.status_code == 200
    assert len(list(csv.DictReader(io.StringIO(export.get_data(as_text=True))))) == 2
    args = ["audit", "export", "--until", "9999-12-31", "--event", "login", "--format", "jsonl"]
    result = runner.invoke(args=args)
    assert result.exit_code == 0, result.output
    assert len(result.output.splitlines()) == 2


def test_audit_pages(app: Flask) -> None:
    for _ in range(55):
        _event("csp.report")
    client = client_for(app, UserFactory(role_name="admin"))
    first = client.get("/admin/audit?event=csp.report").get_data(as_text=True)
    assert "Page 1 of 2" in first
    second = client.get("/admin/audit?event=csp.report&page=2").get_data(as_text=True)
    assert second.count("<code>csp.report</code>") == 5


def test_a_page_past_the_end_of_the_audit_log_says_so(app: Flask) -> None:
    """A page past the last (a bookmark, an edited address) said "No events match these
    filters." under filters that match 55 events, or under none at all."""
    for _ in range(55):
        _event("csp.report")
    client = client_for(app, UserFactory(role_name="admin"))
    html = client.get("/admin/audit?event=csp.report&page=9").get_data(as_text=True)
    assert "No events match" not in html
    assert "There is no page 9 of these events." in html
    assert '<a href="/admin/audit?event=csp.report&amp;page=2">Go to the last page (2)</a>' in html
    unmatched = client.get("/admin/audit?event=nothing.like.it").get_data(as_text=True)
    assert "No events match" in unmatched


@pytest.mark.asvs("V1.3.3")
@pytest.mark.parametrize("value", [
    "=1+1", "+1", "-1", "@SUM(A1)", "\t1", "\r1",
    " =1+1", "   @SUM(A1)",  # spreadsheets and "trim spaces" imports skip leading spaces
    "\uff1d1+1", "\uff0b1", "\uff0d1", "\uff20SUM(A1)", "\ufe661+1", " \uff1d1",  # full-width, small
])
def test_csv_cells_never_start_a_formula(value: str) -> None:
    assert csv_cell(value) == "'" + value
    assert csv_cell("plain") == "plain"
    # A tab or line break may split the cell on import: what follows gets its own quote.
    assert csv_cell("\t=1") == "'\t'=1"
    assert csv_cell("\r=1") == "'\r'=1"
    assert csv_cell(" plain") == " plain"
    assert csv_cell("   ") == "   "
    assert csv_cell(None) == ""


@pytest.mark.asvs("V1.3.3")
@pytest.mark.parametrize("value", [
    "Mozilla/5.0 x;\"=cmd|' /C calc'!A0\"",  # Excel where ";" separates cells
    'curl/8\t"+SUM(1,1)"',  # an import dialog splitting at tabs
    'x; " @SUM(A1)',
    '"-1',
])
@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
def test_a_quote_before_a_formula_does_not_hide_it(value: str, delimiter: str) -> None:
    # The writer quotes a cell holding '"' and doubles it: read from the ";" (or tab) on,
    # '""=cmd...' is an empty quoted field and then "=cmd...", the cell's formula.
    out = io.StringIO()
    csv.writer(out).writerow(["1", csv_cell(value), "z"])
    (cells,) = csv.reader(io.StringIO(out.getvalue()), delimiter=delimiter)
    assert not [cell for cell in cells if cell.lstrip(" ")[:1] in ("=", "+", "-", "@")], cells
    (as_written,) = csv.reader(io.StringIO(out.getvalue()))
    assert as_written[1].replace("'", "") == value.replace("'", "")  # only quotes added


@pytest.mark.asvs("V16.2.1", "V1.2.1")
def test_csv_export_escapes_formulas_and_is_audited(app: Flask) -> None:
    _event(
        "login.failure",
        user_agent='=HYPERLINK("http://evil.test","x")',
        ip="-1",
        details={"username": "@evil"},
    )
    _event("csrf.failure", days_ago=1)
    client = client_for(app, UserFactory(role_name="admin"))
    resp = client.get("/admin/audit.csv?event=login.failure")
    assert resp.status_code == 200
    assert resp.mimetype == "text/csv"
    assert resp.headers["Content-Disposition"].startswith('attachment; filename="bastion-audit-')
    rows = list(csv.DictReader(io.StringIO(resp.get_data(as_text=True))))
    assert len(rows) == 1
    assert rows[0]["user_agent"] == '\'=HYPERLINK("http://evil.test","x")'
    assert rows[0]["ip"] == "'-1"
    assert rows[0]["event"] == "login.failure"
    assert rows[0]["details"] == '{"username":"@evil"}'
    exported = db.session.scalar(db.select(AuditEvent).where(AuditEvent.event == "audit.exported"))
    assert exported is not None
    assert exported.details == {"event": "login.failure"}


# The export is a GET that writes (``audit.exported``), so it runs only when the admin asks:
# a link or an address typed in, never an image, script or frame on some page they view.
def _fetch(site: str, mode: str, dest: str) -> dict[str, str]:
    return {"Sec-Fetch-Site": site, "Sec-Fetch-Mode": mode, "Sec-Fetch-Dest": dest}


ASKED_FOR = {
    "no-fetch-metadata": {},  # curl, scripts, browsers older than the headers
    "download-link": _fetch("same-origin", "navigate", "empty"),  # Chromium, <a download>
    "link-in-tab": _fetch("same-origin", "navigate", "document"),
    "typed-address": _fetch("none", "navigate", "document"),
}
NOT_ASKED_FOR = {
    "image": _fetch("same-origin", "no-cors", "image"),
    "script-fetch": _fetch("same-origin", "cors", "empty"),
    "same-origin-mode": _fetch("same-origin", "same-origin", "empty"),
    "frame": _fetch("same-origin", "navigate", "iframe"),
    "style": _fetch("same-origin", "no-cors", "style"),
    "link-on-another-site": _fetch("cross-site", "navigate", "document"),
    "link-on-a-sibling-host": _fetch("same-site", "navigate", "empty"),
    "download-from-another-site": _fetch("cross-site", "navigate", "empty"),
}


def _export(client: Any, query: str, headers: dict[str, str]) -> tuple[int, str]:
    """Status and body, read in full: an unread CSV stream would outlive the request."""
    resp = client.get(f"/admin/audit.csv?{query}", headers=headers)
    return resp.status_code, resp.get_data(as_text=True)


def _exports() -> list[AuditEvent]:
    exported = db.select(AuditEvent).where(AuditEvent.event == "audit.exported")
    return list(db.session.scalars(exported))


@pytest.mark.asvs("V3.5.3", "V16.3.3")
@pytest.mark.parametrize("headers", NOT_ASKED_FOR.values(), ids=NOT_ASKED_FOR.keys())
def test_export_refuses_requests_the_admin_did_not_make(
    app: Flask, headers: dict[str, str]
) -> None:
    client = client_for(app, UserFactory(role_name="admin"))
    status, body = _export(client, "since=0001-01-01", headers)
    assert status == 403
    assert "choose Export CSV" in body
    assert _exports() == []
    refused = db.session.scalar(
        db.select(AuditEvent).where(AuditEvent.event == "audit.export_refused")
    )
    assert refused is not None
    assert refused.details == {
        "site": headers["Sec-Fetch-Site"],
        "mode": headers["Sec-Fetch-Mode"],
        "dest": headers["Sec-Fetch-Dest"],
    }


@pytest.mark.asvs("V3.5.3")
@pytest.mark.parametrize("headers", ASKED_FOR.values(), ids=ASKED_FOR.keys())
def test_export_runs_when_the_admin_asks(app: Flask, headers: dict[str, str]) -> None:
    client = client_for(app, UserFactory(role_name="admin"))
    status, body = _export(client, "event=login", headers)
    assert status == 200
    assert body.startswith("id,created_at,event,")
    assert [e.details for e in _exports()] == [{"event": "login"}]


@pytest.mark.asvs("V3.5.3", "V2.4.1")
def test_refused_exports_do_not_spend_the_export_allowance(app: Flask) -> None:
    client = client_for(app, UserFactory(role_name="admin"))
    for _ in range(12):  # more than the 10 per minute of export_audit
        assert _export(client, "", NOT_ASKED_FOR["image"])[0] == 403
    assert _export(client, "", ASKED_FOR["download-link"])[0] == 200


@pytest.mark.asvs("V2.2.1", "V15.3.7")
@pytest.mark.parametrize(
    "extra",
    ["_method=POST", "endpoint=x", "_scheme=http&_external=", "_external=1&_scheme=http",
     "_anchor=x", "page=2&values=1"],
)
def test_audit_links_keep_only_the_filters(app: Flask, extra: str) -> None:
    # The query string once went whole into url_for, which takes these keys as its own:
    # BuildError, TypeError or ValueError (500), or absolute http:// links.
    for _ in range(55):
        _event("csp.report")
    client = client_for(app, UserFactory(role_name="admin"))
    resp = client.get(f"/admin/audit?event=csp.report&user=&{extra}")
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    assert 'href="/admin/audit.csv?event=csp.report" download' in html
    assert 'href="http' not in html
    assert ('href="/admin/audit?event=csp.report&amp;page=2" rel="next"' in html) or (
        'href="/admin/audit?event=csp.report&amp;page=1" rel="prev"' in html
    )


# ``flask audit export``: the same export for scripts, with the same formula escaping.


@pytest.mark.asvs("V16.2.1", "V16.4.2")
def test_cli_csv_export_filters_and_escapes_formulas(app: Flask, runner: Any) -> None:
    _event("login.failure", days_ago=10, ip="203.0.113.1")
    _event("login.failure", days_ago=1, user_agent="=HYPERLINK(\"http://evil.test\")")
    _event("login.success", days_ago=1)
    _event("user.disabled", days_ago=1)
    since = (utcnow() - timedelta(days=2)).date().isoformat()
    result = runner.invoke(args=["audit", "export", "--since", since, "--event", "login"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert [r["event"] for r in rows] == ["login.failure", "login.success"]
    assert rows[0]["user_agent"] == "'=HYPERLINK(\"http://evil.test\")"
    exported = db.session.scalars(db.select(AuditEvent).where(AuditEvent.event == "audit.exported"))
    assert [e.details["via"] for e in exported] == ["cli"]


def test_cli_jsonl_export_has_typed_values_and_exact_bounds(app: Flask, runner: Any) -> None:
    old = _event("login.failure", days_ago=3, details={"username": "=cmd"})
    _event("login.failure", days_ago=0)
    until = (utcnow() - timedelta(days=2)).isoformat(timespec="seconds")
    result = runner.invoke(args=["audit", "export", "--until", until, "--format", "jsonl"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [line["id"] for line in lines] == [old.id]
    assert lines[0]["details"] == {"username": "=cmd"}  # JSON is data, not a spreadsheet


def test_cli_event_prefix_wildcards_are_literal(app: Flask, runner: Any) -> None:
    _event("login.failure")
    result = runner.invoke(args=["audit", "export", "--event", "log%", "--format", "jsonl"])
    assert result.exit_code == 0 and result.output == ""


@pytest.mark.parametrize("args", [
    ["--since", "yesterday"],
    ["--until", "2026-13-45"],
    ["--format", "xml"],
    # Valid ISO, but before year 1 or after 9999 once taken to UTC.
    ["--since", "0001-01-01T00:00+14:00"],
    ["--until", "9999-12-31T23:59-14:00"],
])
def test_cli_bad_options_are_refused_with_a_message(app: Flask, runner: Any, args: list[str]) -> None:
    _event("login.failure")
    result = runner.invoke(args=["audit", "export", *args])
    assert result.exit_code == 2
    assert "Invalid value" in result.output and "login.failure" not in result.output
