"""``--deps``: pip-audit against a local OSV fixture, and against unreachable services."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from packaging.version import Version

from flask_deploy_check.deps import DepsOptions, audit_installed, in_range, is_affected
from tests.check import apps
from tests.check.fixtures import (
    INSTALLED_FLASK,
    closed_port_url,
    flask_advisory,
    schema,
    write_vuln_db,
)

pytestmark = pytest.mark.asvs("V15.2.1")


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A socket that accepts connections and never answers: only a timeout ends the wait."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield f"http://127.0.0.1:{server.getsockname()[1]}/v1/query"


def test_local_fixture_flags_the_installed_flask(tmp_path: Path) -> None:
    outcome = audit_installed(DepsOptions(vuln_db=write_vuln_db(tmp_path, vulnerable=True)))
    assert outcome.error is None
    assert outcome.audited > 10
    [vuln] = outcome.vulnerabilities
    assert (vuln.package, vuln.version) == ("flask", INSTALLED_FLASK)
    assert {vuln.id, *vuln.aliases} == {"GHSA-test-flsk-0001", "CVE-2099-0001"}
    assert vuln.fix_versions == ("999.0",)


def test_fixed_version_is_not_flagged(tmp_path: Path) -> None:
    outcome = audit_installed(DepsOptions(vuln_db=write_vuln_db(tmp_path, vulnerable=False)))
    assert outcome.error is None
    assert outcome.vulnerabilities == []


def test_exact_versions_list_matches(tmp_path: Path) -> None:
    advisory = flask_advisory("0.1")
    advisory["affected"] = [
        {"package": {"ecosystem": "PyPI", "name": "flask"}, "versions": [INSTALLED_FLASK]}
    ]
    path = tmp_path / "versions.json"
    path.write_text(json.dumps([advisory]), encoding="utf-8")
    assert len(audit_installed(DepsOptions(vuln_db=path)).vulnerabilities) == 1


def test_cli_reports_vulnerability_from_env_var(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLASK_SECURITY_VULN_DB", str(write_vuln_db(tmp_path, vulnerable=True)))
    runner = apps.safe_app().test_cli_runner()
    result = runner.invoke(args=["security", "check", "--deps", "--format", "json"])
    assert result.exit_code == 1, result.output
    document = json.loads(result.output)
    jsonschema.validate(document, schema())
    [finding] = document["findings"]
    assert finding["id"] == "BST-E503"
    assert finding["message"].startswith(f"flask {INSTALLED_FLASK}: ")
    assert "GHSA-test-flsk-0001" in finding["message"]
    assert "CVE-2099-0001" in finding["message"]
    assert document["summary"]["deps"] is True


@pytest.mark.parametrize("source", ["option", "env"])
def test_a_missing_database_file_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    # A mistyped path in CI was a W504 warning and exit 0: the audit "passed" unread.
    missing = tmp_path / "osv-typo.json"
    args = ["security", "check", "--deps", "--format", "json"]
    if source == "env":
        monkeypatch.setenv("FLASK_SECURITY_VULN_DB", str(missing))
    else:
        args += ["--vuln-db", str(missing)]
    result = apps.safe_app().test_cli_runner().invoke(args=args)
    assert result.exit_code == 2, result.output
    assert "does not exist" in result.output
    assert "osv-typo.json" in result.output


def test_unreachable_service_is_never_a_clean_result() -> None:
    started = time.monotonic()
    outcome = audit_installed(DepsOptions(vuln_url=closed_port_url(), timeout=2))
    assert time.monotonic() - started < 10
    assert outcome.error is not None
    assert "ConnectionError" in outcome.error
    assert outcome.vulnerabilities == []


@pytest.mark.timeout(30)
def test_silent_service_times_out_quickly(silent_server: str) -> None:
    started = time.monotonic()
    runner = apps.safe_app().test_cli_runner()
    result = runner.invoke(
        args=[
            "security",
            "check",
            "--deps",
            "--vuln-url",
            silent_server,
            "--deps-timeout",
            "1",
            "--format",
            "json",
            "--fail-level",
            "warning",
        ]
    )
    assert time.monotonic() - started < 15
    assert result.exit_code == 1
    [finding] = json.loads(result.output)["findings"]
    assert finding["id"] == "BST-W504"
    assert finding["severity"] == "warning"
    assert finding["title"] == "Could not check dependencies"
    assert f"querying {silent_server} failed" in finding["message"]
    assert "Timeout" in finding["message"]


def test_unreadable_database_is_reported(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    for path in (broken, tmp_path / "missing.json"):
        outcome = audit_installed(DepsOptions(vuln_db=path))
        assert outcome.error is not None
        assert str(path) in outcome.error


@pytest.mark.asvs("V16.5.3")
@pytest.mark.parametrize(
    "document",
    [{"name": "my-app", "version": "1.0"}, [1, 2], [{"name": "flask"}], {"vulns": {}}, "vulns"],
)
def test_a_file_that_is_no_osv_document_fails_the_audit(tmp_path: Path, document: Any) -> None:
    # A wrong file (a package.json, a list of packages) was read as "no advisories": the
    # audit passed clean on data that said nothing about vulnerabilities.
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps(document), encoding="utf-8")
    outcome = audit_installed(DepsOptions(vuln_db=wrong))
    assert outcome.error is not None
    assert "is not an OSV list" in outcome.error


@pytest.mark.parametrize("document", [{}, {"vulns": []}, []])
def test_an_osv_document_without_advisories_is_clean(tmp_path: Path, document: Any) -> None:
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps(document), encoding="utf-8")
    outcome = audit_installed(DepsOptions(vuln_db=empty))
    assert outcome.error is None and outcome.vulnerabilities == []


@pytest.mark.parametrize(
    ("version", "events", "affected"),
    [
        ("1.0", [{"introduced": "0"}, {"fixed": "1.1"}], True),
        ("1.1", [{"introduced": "0"}, {"fixed": "1.1"}], False),
        ("0.9", [{"introduced": "1.0"}, {"fixed": "2.0"}], False),
        ("2.0", [{"introduced": "1.0"}, {"last_affected": "2.0"}], True),
        ("2.0.1", [{"introduced": "1.0"}, {"last_affected": "2.0"}], False),
        ("3.5", [{"introduced": "1.0"}, {"fixed": "2.0"}, {"introduced": "3.0"}], True),
        ("2.5", [{"introduced": "1.0"}, {"fixed": "2.0"}, {"introduced": "3.0"}], False),
    ],
)
def test_osv_range_semantics(version: str, events: list[dict[str, str]], affected: bool) -> None:
    assert in_range(Version(version), events) is affected


def test_other_ecosystems_and_packages_do_not_match() -> None:
    entry: dict[str, Any] = {
        "package": {"ecosystem": "npm", "name": "flask"},
        "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}],
    }
    assert not is_affected("flask", Version("1.0"), entry)
    entry["package"] = {"ecosystem": "PyPI", "name": "Flask-Login"}
    assert not is_affected("flask", Version("1.0"), entry)
    assert is_affected("flask-login", Version("1.0"), entry)
