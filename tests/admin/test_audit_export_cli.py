"""``flask audit export``: the admin export for scripts, with the same formula escaping."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask

from bastion.extensions import db
from bastion.models import AuditEvent, utcnow


def _event(name: str, *, days_ago: float = 0, **fields: object) -> AuditEvent:
    row = AuditEvent(event=name, created_at=utcnow() - timedelta(days=days_ago), **fields)
    db.session.add(row)
    db.session.commit()
    return row


@pytest.mark.asvs("V16.2.1", "V16.4.2")
def test_csv_export_filters_and_escapes_formulas(app: Flask, runner: Any) -> None:
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


def test_jsonl_export_has_typed_values_and_exact_bounds(app: Flask, runner: Any) -> None:
    old = _event("login.failure", days_ago=3, details={"username": "=cmd"})
    _event("login.failure", days_ago=0)
    until = (utcnow() - timedelta(days=2)).isoformat(timespec="seconds")
    result = runner.invoke(args=["audit", "export", "--until", until, "--format", "jsonl"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [line["id"] for line in lines] == [old.id]
    assert lines[0]["details"] == {"username": "=cmd"}  # JSON is data, not a spreadsheet


def test_event_prefix_wildcards_are_literal(app: Flask, runner: Any) -> None:
    _event("login.failure")
    result = runner.invoke(args=["audit", "export", "--event", "log%", "--format", "jsonl"])
    assert result.exit_code == 0 and result.output == ""


@pytest.mark.parametrize("args", [["--since", "yesterday"], ["--until", "2026-13-45"], ["--format", "xml"]])
def test_bad_options_are_refused_with_a_message(app: Flask, runner: Any, args: list[str]) -> None:
    _event("login.failure")
    result = runner.invoke(args=["audit", "export", *args])
    assert result.exit_code == 2
    assert "Invalid value" in result.output and "login.failure" not in result.output
