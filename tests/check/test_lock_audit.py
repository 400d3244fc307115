"""``make audit``: the locked requirements against a local OSV file or an unreachable service.

The tests run the very command ``make -n audit`` prints, so the target and the entry point
cannot drift apart.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from packaging.version import Version

from flask_deploy_check.lock_audit import main, read_lock
from tests.check.fixtures import closed_port_url

pytestmark = pytest.mark.asvs("V15.2.1")

ROOT = Path(__file__).resolve().parents[2]
LOCKS = ("requirements/main.txt", "requirements/build.txt")
HASH = "--hash=sha256:" + "a" * 64


def audit_command(**variables: str) -> list[str]:
    """The command ``make audit`` runs with these variables (dry run: nothing installed)."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    assigned = [f"{name}={value}" for name, value in variables.items()]
    dry = subprocess.run(
        ["make", "-n", "audit", *assigned], cwd=ROOT, capture_output=True, text=True, check=True
    )
    [line] = [line for line in dry.stdout.splitlines() if "flask_deploy_check.lock_audit" in line]
    return shlex.split(line)


def run_audit(**variables: str) -> subprocess.CompletedProcess[str]:
    command = audit_command(**variables)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLASK_SECURITY_VULN")}
    return subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=60, env=env, check=False
    )


def pinned(lock: str, package: str) -> str:
    """The version ``lock`` pins ``package`` at."""
    [version] = [str(v) for name, v in read_lock(ROOT / lock) if name == package]
    return version


def advisory(ident: str, package: str, introduced: str, fixed: str) -> dict[str, Any]:
    return {
        "id": ident,
        "aliases": [ident.replace("GHSA", "CVE")],
        "summary": f"Test advisory for {package}.",
        "affected": [
            {
                "package": {"ecosystem": "PyPI", "name": package},
                "ranges": [
                    {"type": "ECOSYSTEM", "events": [{"introduced": introduced}, {"fixed": fixed}]}
                ],
            }
        ],
    }


def write_db(tmp_path: Path, entries: list[dict[str, Any]]) -> Path:
    path = tmp_path / "osv.json"
    path.write_text(json.dumps({"vulns": entries}), encoding="utf-8")
    return path


def test_the_target_audits_both_runtime_locks_with_the_given_source() -> None:
    command = audit_command(VULN_DB="/srv/osv export.json")
    assert command[1:3] == ["-m", "flask_deploy_check.lock_audit"]
    assert command[3:] == ["-r", LOCKS[0], "-r", LOCKS[1], "--vuln-db", "/srv/osv export.json"]
    mirror = audit_command(VULN_URL="https://osv.internal/v1/query")
    assert mirror[-2:] == ["--vuln-url", "https://osv.internal/v1/query"]
    help_text = subprocess.run(["make", "help"], cwd=ROOT, capture_output=True, text=True)
    assert "audit " in help_text.stdout


@pytest.mark.parametrize(("lock", "package"), [(LOCKS[0], "flask"), (LOCKS[1], "setuptools")])
def test_a_vulnerable_pin_fails_the_audit(tmp_path: Path, lock: str, package: str) -> None:
    version = pinned(lock, package)
    fix = f"{Version(version).major + 1}.0"
    db = write_db(
        tmp_path,
        [
            advisory("GHSA-test-lock-0001", package, version, fix),
            # fixed at the pinned version: must not be reported
            advisory("GHSA-test-lock-0002", package, "0", version),
        ],
    )
    result = run_audit(VULN_DB=str(db))
    assert result.returncode == 1, result.stdout + result.stderr
    [line] = [line for line in result.stdout.splitlines() if "GHSA-test-lock" in line]
    assert line.startswith(f"{package} {version}: ")
    assert "GHSA-test-lock-0001" in line and "CVE-test-lock-0001" in line
    assert f"fixed in {fix}" in line
    assert "1 known vulnerability" in result.stdout


def test_no_advisory_passes_and_says_how_many_pins_were_audited(tmp_path: Path) -> None:
    pins = {pin for lock in LOCKS for pin in read_lock(ROOT / lock)}
    # Every pin of the universal lock is audited, including those for other platforms.
    assert any(name == "tzdata" for name, _ in pins)
    result = run_audit(VULN_DB=str(write_db(tmp_path, [])))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(pins)} pins audited from {LOCKS[0]}, {LOCKS[1]}: no known vulnerabilities" in (
        result.stdout
    )


def test_a_pin_installed_only_elsewhere_is_still_audited(tmp_path: Path) -> None:
    # tzdata is pinned for Windows only (`; sys_platform == 'win32'`): an audit of the
    # installed set, or one that evaluated markers, would never see it.
    version = pinned(LOCKS[0], "tzdata")
    db = write_db(tmp_path, [advisory("GHSA-test-lock-0003", "tzdata", version, "99999")])
    result = run_audit(VULN_DB=str(db))
    assert result.returncode == 1
    assert f"tzdata {version}: " in result.stdout


@pytest.mark.timeout(30)
def test_an_unreachable_service_fails_loudly_and_quickly() -> None:
    url = closed_port_url()
    started = time.monotonic()
    result = run_audit(VULN_URL=url)
    assert time.monotonic() - started < 20
    assert result.returncode == 3
    assert result.stderr.startswith("could not check ")
    assert f"querying {url} failed: ConnectionError" in result.stderr
    assert "no known vulnerabilities" not in result.stdout


def test_the_environment_variable_names_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    version = pinned(LOCKS[0], "flask")
    db = write_db(tmp_path, [advisory("GHSA-test-lock-0004", "flask", version, "999.0")])
    monkeypatch.setenv("FLASK_SECURITY_VULN_DB", str(db))
    assert main(["-r", str(ROOT / LOCKS[0])]) == 1
    assert "GHSA-test-lock-0004" in capsys.readouterr().out


def test_a_wrong_or_missing_database_is_never_a_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("FLASK_SECURITY_VULN_DB", raising=False)
    wrong = tmp_path / "package.json"
    wrong.write_text('{"name": "app", "version": "1.0"}', encoding="utf-8")
    assert main(["-r", str(ROOT / LOCKS[1]), "--vuln-db", str(wrong)]) == 3
    assert "is not an OSV list" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["-r", str(ROOT / LOCKS[1]), "--vuln-db", str(tmp_path / "typo.json")])
    assert exit_info.value.code == 2
    assert "typo.json does not exist" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (f"flask>=3.0 \\\n    {HASH}\n", "is not pinned to one version with =="),
        (f"flask==3.* {HASH}\n", "is not pinned to one version with =="),
        (f"flask==3.0,!=3.0.1 {HASH}\n", "is not pinned to one version with =="),
        (f"flask @ https://example.com/flask-3.0.tar.gz {HASH}\n", "is not pinned"),
        ("flask==3.1.2\n", "has no --hash=sha256"),
        ("flask==3.1.2 --hash=md5:abc\n", "is not a requirement"),
        (f"-r other.txt\nflask==3.1.2 {HASH}\n", "is not a requirement"),
    ],
)
def test_a_line_that_is_not_a_hash_pinned_pin_is_refused(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    text: str,
    reason: str,
) -> None:
    monkeypatch.delenv("FLASK_SECURITY_VULN_DB", raising=False)
    lock = tmp_path / "lock.txt"
    lock.write_text(f"# header\nalembic==1.0 {HASH}\n{text}", encoding="utf-8")
    empty = write_db(tmp_path, [])
    assert main(["-r", str(lock), "--vuln-db", str(empty)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"refused: {lock}:" in captured.err and reason in captured.err


def test_a_lock_without_pins_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A truncated or wrong file would otherwise "pass" with nothing audited.
    lock = tmp_path / "lock.txt"
    lock.write_text("# only comments\n\n", encoding="utf-8")
    assert main(["-r", str(lock), "--vuln-db", str(write_db(tmp_path, []))]) == 2
    assert "holds no pinned requirement" in capsys.readouterr().err


def test_markers_continuations_and_comments_are_read(tmp_path: Path) -> None:
    lock = tmp_path / "lock.txt"
    lock.write_text(
        f"# via x\nPyWin32==306 ; sys_platform == 'win32' \\\n    {HASH} \\\n"
        f"    --hash=sha256:{'b' * 64}\n    # via y\n",
        encoding="utf-8",
    )
    assert read_lock(lock) == [("pywin32", Version("306"))]


def test_a_pin_continued_to_the_end_of_the_file_is_audited(tmp_path: Path) -> None:
    """pip installs a last requirement whose final line still ends in a backslash (an edited
    or cut lock); the audit must see it too, not drop it unread."""
    lock = tmp_path / "lock.txt"
    lock.write_text(f"alembic==1.0 {HASH}\nflask==0.1 \\\n    {HASH} \\\n", encoding="utf-8")
    assert read_lock(lock) == [("alembic", Version("1.0")), ("flask", Version("0.1"))]
