"""Every registered check fires on its unsafe app and stays silent on the safe twin.

The cases are parametrized over the registry, so a new check without a test app fails here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from flask_deploy_check.registry import CheckSpec, all_specs
from flask_deploy_check.runner import Report, run_checks
from tests.check import apps
from tests.check.fixtures import deps_options

SPECS = all_specs()


@pytest.fixture(autouse=True)
def _no_flask_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    """The checks read FLASK_DEBUG; the developer's shell must not change results."""
    monkeypatch.delenv("FLASK_DEBUG", raising=False)


def _param(spec: CheckSpec) -> object:
    marks = [pytest.mark.asvs(spec.asvs)] if spec.asvs else []
    return pytest.param(spec, id=spec.id, marks=marks)


def run_case(spec: CheckSpec, directory: Path, *, safe: bool) -> Report:
    """Run all checks (deploy mode) on the safe twin or on the unsafe app for ``spec``."""
    if spec.kind == "deps":
        return run_checks(
            apps.safe_app(), deploy=True, deps=deps_options(spec.id, directory, safe=safe)
        )
    assert spec.id in apps.UNSAFE, f"{spec.id} has no unsafe app in tests/check/apps.py"
    app = apps.safe_app() if safe else apps.make_app(apps.UNSAFE[spec.id])
    return run_checks(app, deploy=True)


@pytest.mark.parametrize("spec", [_param(spec) for spec in SPECS])
def test_check_fires_on_its_unsafe_app(spec: CheckSpec, tmp_path: Path) -> None:
    report = run_case(spec, tmp_path, safe=False)
    found = [finding for finding in report.findings if finding.id == spec.id]
    assert found, f"{spec.id} did not fire; got {[f.id for f in report.findings]}"
    for finding in found:
        assert finding.severity == spec.severity
        assert finding.message
        assert finding.why
        assert finding.fix


@pytest.mark.parametrize("spec", [_param(spec) for spec in SPECS])
def test_check_is_silent_on_the_safe_twin(spec: CheckSpec, tmp_path: Path) -> None:
    report = run_case(spec, tmp_path, safe=True)
    assert spec.id not in {finding.id for finding in report.findings}


@pytest.mark.parametrize("deploy", [True, False])
def test_safe_twin_has_no_findings_at_all(deploy: bool) -> None:
    report = run_checks(apps.safe_app(), deploy=deploy)
    assert report.findings == []
    assert report.checks_run > 0


def test_every_unsafe_app_belongs_to_a_registered_check() -> None:
    assert set(apps.UNSAFE) <= {spec.id for spec in SPECS}


@pytest.mark.asvs("V13.4.2")
def test_unsafe_quickstart_app_is_caught() -> None:
    report = run_checks(apps.unsafe_app(), deploy=True)
    ids = {finding.id for finding in report.findings}
    assert {"BST-E004", "BST-E101", "BST-E301", "BST-E401", "BST-W206"} <= ids
