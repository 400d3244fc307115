"""Run the registered checks against an app and collect a report.

A check that fails to run (a live request raising, an odd config value) never
aborts the run or prints a traceback: it becomes a finding instead, BST-E505 when the
check was an error-level one (so the default ``--fail-level error`` still fails: an
unverified control must not pass silently) and BST-W501 otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from flask import Flask

from flask_deploy_check.context import CheckContext, LiveRequestError, describe_exception
from flask_deploy_check.deps import DepsOptions
from flask_deploy_check.findings import Finding, Severity
from flask_deploy_check.registry import CheckSpec, all_specs, register

SILENCED_CONFIG_KEY = "DEPLOY_CHECK_SILENCED"

_RUN_AGAIN = (
    "Make the app answer the probe (e.g. provide the database the index page needs) "
    "and run the check again, or silence the check explicitly."
)
CHECK_FAILED = register(
    CheckSpec(
        id="BST-W501",
        title="A check could not run",
        why="An unverified control is not a passed control: the condition it tests is unknown.",
        fix=_RUN_AGAIN,
        asvs=None,
        deploy=False,
        kind="meta",
        func=None,
    )
)
ERROR_CHECK_FAILED = register(
    CheckSpec(
        id="BST-E505",
        title="An error-level check could not run",
        why="An unverified control is not a passed control, and this one guards against a "
        "serious flaw: a run that could not verify it must fail like one that found it.",
        fix=_RUN_AGAIN,
        asvs=None,
        deploy=False,
        kind="meta",
        func=None,
    )
)
SERVER_ERROR = register(
    CheckSpec(
        id="BST-I502",
        title="A live probe answered with a server error",
        why="Header and cookie checks read the error response, which may differ from a "
        "normal page (e.g. when the database is not reachable from where the check runs).",
        fix="Run the check where the app's backing services are reachable for full coverage.",
        asvs=None,
        deploy=False,
        kind="meta",
        func=None,
    )
)


@dataclass
class Report:
    """Everything one run found, plus what is needed to summarise it."""

    app_name: str
    deploy: bool
    deps: bool
    findings: list[Finding] = field(default_factory=list)
    silenced: int = 0
    checks_run: int = 0

    def count(self, severity: Severity) -> int:
        """Number of findings with exactly this severity."""
        return sum(1 for finding in self.findings if finding.severity == severity)

    def failed(self, fail_level: Severity) -> bool:
        """Whether any finding is at or above ``fail_level`` (drives the exit code)."""
        return any(finding.severity >= fail_level for finding in self.findings)


def _not_run(severity: Severity) -> CheckSpec:
    """The finding for a check of ``severity`` that could not run."""
    return ERROR_CHECK_FAILED if severity >= Severity.ERROR else CHECK_FAILED


def _by_severity(ids: list[str]) -> list[tuple[CheckSpec, list[str]]]:
    """The blocked ``ids`` split by the finding that reports them (E503 first)."""
    registry = {spec.id: spec for spec in all_specs()}
    errors = [i for i in ids if registry[i].severity >= Severity.ERROR]
    others = [i for i in ids if i not in errors]
    return [
        (meta, group)
        for meta, group in ((ERROR_CHECK_FAILED, errors), (CHECK_FAILED, others))
        if group
    ]


def selected_specs(deploy: bool, deps: bool) -> list[CheckSpec]:
    """The checks a run executes: deploy-only ones need ``--deploy``, deps need ``--deps``."""
    return [
        spec
        for spec in all_specs()
        if spec.func is not None and (deploy or not spec.deploy) and (deps or spec.kind != "deps")
    ]


def _run_one(spec: CheckSpec, ctx: CheckContext) -> list[Finding]:
    assert spec.func is not None
    result = spec.func(ctx)
    if result is None:
        return []
    messages = [result] if isinstance(result, str) else list(result)
    return [spec.finding(message) for message in messages]


def run_checks(
    app: Flask,
    *,
    deploy: bool = False,
    deps: DepsOptions | None = None,
    ignore: Iterable[str] = (),
) -> Report:
    """Run every selected check against ``app`` and return the report."""
    ctx = CheckContext(app=app, deploy=deploy, deps_options=deps)
    report = Report(app_name=app.import_name, deploy=deploy, deps=deps is not None)
    findings: list[Finding] = []
    blocked: dict[str, tuple[str, list[str]]] = {}
    for spec in selected_specs(deploy, deps is not None):
        report.checks_run += 1
        try:
            findings.extend(_run_one(spec, ctx))
        except LiveRequestError as exc:
            blocked.setdefault(exc.probe, (exc.reason, []))[1].append(spec.id)
        except Exception as exc:
            findings.append(
                _not_run(spec.severity).finding(
                    f"could not run check {spec.id}: {describe_exception(exc)}"
                )
            )
    for reason, ids in blocked.values():
        for meta, group in _by_severity(ids):
            message = f"could not run live checks {', '.join(group)}: {reason}"
            findings.append(meta.finding(message))
    for result in ctx.results.values():
        if result.probe.failing_view:
            continue  # a 500 is what that probe asks for
        if result.response is not None and result.response.status_code >= 500:
            raised = result.app_exception
            cause = f" because the app raised {raised}" if raised else ""
            findings.append(
                SERVER_ERROR.finding(
                    f"{result.probe.describe(ctx.host)} answered "
                    f"{result.response.status_code}{cause}; checks read that error response."
                )
            )
    configured = app.config.get(SILENCED_CONFIG_KEY) or ()
    if isinstance(configured, str):  # "BST-E001, BST-W104": ids, not the characters of one
        configured = configured.replace(",", " ").split()
    silenced = set(ignore) | set(configured)
    report.findings = sorted(
        (finding for finding in findings if finding.id not in silenced), key=Finding.sort_key
    )
    report.silenced = len(findings) - len(report.findings)
    return report
