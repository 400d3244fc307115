"""Render a report as a readable table or as stable JSON for CI."""

from __future__ import annotations

import json
import shutil
import textwrap
from typing import Any

import click

from flask_deploy_check.findings import Finding, Severity
from flask_deploy_check.runner import Report

JSON_VERSION = 1
COLOURS = {Severity.ERROR: "red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}


def summary(report: Report, fail_level: Severity) -> dict[str, Any]:
    """Counts and the verdict; the same numbers in text and JSON."""
    return {
        "deploy": report.deploy,
        "deps": report.deps,
        "checks_run": report.checks_run,
        "total": len(report.findings),
        "error": report.count(Severity.ERROR),
        "warning": report.count(Severity.WARNING),
        "info": report.count(Severity.INFO),
        "silenced": report.silenced,
        "fail_level": fail_level.label,
        "failed": report.failed(fail_level),
    }


def render_json(report: Report, fail_level: Severity) -> str:
    """The JSON document described by ``schema.json`` (keys never renamed within a version)."""
    document = {
        "version": JSON_VERSION,
        "app": report.app_name,
        "findings": [finding.to_dict() for finding in report.findings],
        "summary": summary(report, fail_level),
    }
    return json.dumps(document, indent=2, ensure_ascii=False)


def _wrap(label: str, text: str, indent: int, width: int) -> list[str]:
    prefix = " " * indent + label
    return textwrap.wrap(
        text,
        width=max(width, indent + 40),
        initial_indent=prefix,
        subsequent_indent=" " * len(prefix),
        break_on_hyphens=False,
    ) or [prefix]


def _finding_lines(finding: Finding, width: int) -> list[str]:
    severity = finding.severity.label
    styled = click.style(f"{severity:<8}", fg=COLOURS[finding.severity], bold=True)
    asvs = finding.asvs or "-"
    head = f"{finding.id:<9} {styled} {asvs:<8} "
    indent = 9 + 1 + 8 + 1 + 8 + 1
    lines = _wrap("", f"{finding.title}: {finding.message}", indent, width)
    lines[0] = head + lines[0].lstrip()
    lines += _wrap("why: ", finding.why, indent, width)
    lines += _wrap("fix: ", finding.fix, indent, width)
    return lines


def render_text(report: Report, fail_level: Severity, width: int | None = None) -> str:
    """A table, one finding per block, then the totals; styles are stripped off-TTY."""
    width = width or min(shutil.get_terminal_size((100, 24)).columns, 120)
    mode = "deploy mode" if report.deploy else "development mode (add --deploy for more)"
    lines = [f"Security check of {report.app_name!r}, {mode}", ""]
    if report.findings:
        header = f"{'ID':<9} {'SEVERITY':<8} {'ASVS':<8} FINDING"
        lines += [click.style(header, bold=True), "-" * min(width, 100)]
        for finding in report.findings:
            lines += [*_finding_lines(finding, width), ""]
    else:
        lines += ["No problems found.", ""]
    counts = summary(report, fail_level)
    totals = (
        f"{counts['error']} error(s), {counts['warning']} warning(s), {counts['info']} info "
        f"from {counts['checks_run']} checks"
    )
    if report.silenced:
        totals += f" ({report.silenced} silenced)"
    verdict = "FAILED" if counts["failed"] else "passed"
    colour = "red" if counts["failed"] else "green"
    lines.append(
        f"{totals}. {click.style(verdict, fg=colour, bold=True)} (fail level: {fail_level.label})."
    )
    return "\n".join(lines)
