"""``make audit``: the locked requirements against a local OSV file or an unreachable service.

The tests run the very command ``make -n audit`` prints, so the target and the entry point
cannot drift apart.
"""

from __future__ import annotations

import codecs
import json
import os
import shlex
import shutil
import subprocess
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from flask_deploy_check.lock_audit import EXIT_STALE, main, read_lock
from flask_deploy_check.osv_age import DataAge, modified
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
    assert audit_command(VULN_MAX_AGE_DAYS="30")[-2:] == ["--max-age-days", "30"]
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


def osv_time(moment: datetime) -> str:
    """``moment`` as OSV exports write it (RFC 3339, UTC, ``Z``)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def dated(entry: dict[str, Any], days_ago: float) -> dict[str, Any]:
    return {**entry, "modified": osv_time(datetime.now(UTC) - timedelta(days=days_ago))}


def test_the_age_of_the_export_is_its_newest_advisory_change(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    entries = [
        dated(advisory("GHSA-test-age-0001", "nothing-locked", "0", "1"), 40),
        # nanoseconds and an offset, as some exporters write them
        {
            **advisory("GHSA-test-age-0002", "nothing-locked", "0", "1"),
            "modified": (now - timedelta(days=2))
            .astimezone(timezone(timedelta(hours=-11)))
            .strftime("%Y-%m-%dT%H:%M:%S.123456789-11:00"),
        },
        dated(advisory("GHSA-test-age-0003", "nothing-locked", "0", "1"), 20),
    ]
    result = run_audit(VULN_DB=str(write_db(tmp_path, entries)))
    assert result.returncode == 0, result.stdout + result.stderr
    as_of = (now - timedelta(days=2)).strftime("%Y-%m-%d")
    assert f"vulnerability data as of {as_of}, 2 days old\n" in result.stdout
    assert "no known vulnerabilities\n" in result.stdout


def test_a_stale_export_fails_with_its_own_status_however_new_the_file(
    tmp_path: Path,
) -> None:
    # Copied or checked out today (a fresh mtime), but its newest record is 10 days old.
    entries = [dated(advisory(f"GHSA-test-age-{n}", "nothing-locked", "0", "1"), 10 + n)
               for n in range(3)]
    db = write_db(tmp_path, entries)
    result = run_audit(VULN_DB=str(db))
    assert result.returncode == EXIT_STALE == 4, result.stdout + result.stderr
    assert "10 days old\n" in result.stdout
    assert "no known vulnerabilities in stale data" in result.stdout
    assert result.stderr.startswith("stale: vulnerability data as of ")
    assert "more than the 7 days --max-age-days allows; export a fresh OSV database" in (
        result.stderr
    )
    assert run_audit(VULN_DB=str(db), VULN_MAX_AGE_DAYS="11").returncode == 0
    assert run_audit(VULN_DB=str(db), VULN_MAX_AGE_DAYS="9").returncode == EXIT_STALE
    accepted = run_audit(VULN_DB=str(db), VULN_MAX_AGE_DAYS="0")
    assert accepted.returncode == 0 and accepted.stderr == ""
    assert "10 days old" in accepted.stdout  # the age is still reported


def test_a_vulnerability_in_stale_data_is_still_reported_as_one(tmp_path: Path) -> None:
    version = pinned(LOCKS[0], "flask")
    entry = dated(advisory("GHSA-test-age-0010", "flask", version, "999.0"), 30)
    result = run_audit(VULN_DB=str(write_db(tmp_path, [entry])))
    assert result.returncode == 1
    assert "GHSA-test-age-0010" in result.stdout
    assert "1 known vulnerability in stale data" in result.stdout
    assert "stale: " in result.stderr


def test_an_export_without_dates_is_dated_by_its_file_and_says_so(tmp_path: Path) -> None:
    db = write_db(tmp_path, [advisory("GHSA-test-age-0020", "nothing-locked", "0", "1")])
    fresh = run_audit(VULN_DB=str(db))
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    basis = "(by the file's modification time: its records carry no `modified` date)"
    assert f"0 days old {basis}" in fresh.stdout
    month_ago = time.time() - 30 * 86400
    os.utime(db, (month_ago, month_ago))
    stale = run_audit(VULN_DB=str(db))
    assert stale.returncode == EXIT_STALE
    assert f"30 days old {basis}" in stale.stderr


@pytest.mark.parametrize(
    ("modified", "status", "message"),
    [
        # A date ahead of the clock would keep a stale export "fresh" for ever.
        ("2999-01-01T00:00:00Z", EXIT_STALE, "in the future"),
        ("yesterday", 3, "advisory GHSA-test-age-0030 has no RFC 3339 `modified` date"),
        ("2026-13-01T00:00:00Z", 3, "has no RFC 3339 `modified` date"),
        (20261120, 3, "has no RFC 3339 `modified` date"),
    ],
)
def test_a_date_that_cannot_vouch_for_the_data_fails(
    tmp_path: Path, modified: object, status: int, message: str
) -> None:
    newest = dated(advisory("GHSA-test-age-0031", "nothing-locked", "0", "1"), 1)
    entry = {**advisory("GHSA-test-age-0030", "nothing-locked", "0", "1"), "modified": modified}
    result = run_audit(VULN_DB=str(write_db(tmp_path, [newest, entry])))
    assert result.returncode == status, result.stdout + result.stderr
    assert message in result.stderr
    assert "no known vulnerabilities\n" not in result.stdout


@pytest.mark.parametrize("days", ["-1", "seven", "1.5"])
def test_a_bad_max_age_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], days: str
) -> None:
    db = write_db(tmp_path, [])
    with pytest.raises(SystemExit) as exit_info:
        main(["-r", str(ROOT / LOCKS[1]), "--vuln-db", str(db), "--max-age-days", days])
    assert exit_info.value.code == 2
    assert "argument --max-age-days" in capsys.readouterr().err


LOCK_TEXT = f"# header\nalembic==1.0 {HASH}\nflask==3.0 ; python_version >= '3' \\\n    {HASH}\n"
LOCK_PINS = [("alembic", Version("1.0")), ("flask", Version("3.0"))]


def pip_reads(path: Path) -> list[str]:
    """The requirements pip itself finds in ``path``: what the audit must see."""
    from pip._internal.network.session import PipSession
    from pip._internal.req.req_file import parse_requirements

    found = parse_requirements(str(path), session=PipSession())
    return [canonicalize_name(Requirement(parsed.requirement).name) for parsed in found]


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(codecs.BOM_UTF8 + LOCK_TEXT.encode(), id="utf-8 bom"),
        pytest.param(LOCK_TEXT.encode("utf-16"), id="utf-16 bom (PowerShell >)"),
        pytest.param(LOCK_TEXT.replace("\n", "\r\n").encode(), id="crlf"),
        pytest.param(
            codecs.BOM_UTF8 + LOCK_TEXT.replace("\n", "\r\n").encode(), id="bom and crlf"
        ),
    ],
)
def test_a_lock_pip_reads_is_read_as_pip_reads_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], data: bytes
) -> None:
    lock = tmp_path / "lock.txt"
    lock.write_bytes(data)
    assert read_lock(lock) == LOCK_PINS
    assert pip_reads(lock) == [name for name, _ in LOCK_PINS]
    assert main(["-r", str(lock), "--vuln-db", str(write_db(tmp_path, []))]) == 0
    assert "2 pins audited" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        pytest.param(
            LOCK_TEXT.encode().replace(b"flask", b"fl\xe9ask"),
            "lock.txt:3: is not UTF-8 (byte 0xe9): re-save the file as UTF-8",
            id="latin-1",
        ),
        pytest.param(
            LOCK_TEXT.encode().replace(b"header", b"hea\x00der"),
            "lock.txt:1: holds a NUL byte: not a text file, or UTF-16 saved without a "
            "byte order mark; re-save it as UTF-8",
            id="nul",
        ),
        pytest.param(
            LOCK_TEXT.replace("\n", "\r\n").encode("utf-16-le"),
            "lock.txt:1: holds a NUL byte",
            id="utf-16 without bom",
        ),
        pytest.param(
            LOCK_TEXT.encode("utf-16") + b"\x00",
            "lock.txt:5: is not UTF-16-LE (byte 0x00)",
            id="cut utf-16",
        ),
        pytest.param(
            LOCK_TEXT.replace("# header", "# header\n# -*- coding: latin-1 -*-").encode(),
            "lock.txt:2: declares the encoding 'latin-1', not UTF-8",
            id="declared encoding",
        ),
    ],
)
def test_an_undecodable_lock_is_refused_at_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], data: bytes, reason: str
) -> None:
    lock = tmp_path / "lock.txt"
    lock.write_bytes(data)
    assert main(["-r", str(lock), "--vuln-db", str(write_db(tmp_path, []))]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"refused: {lock}") and reason in captured.err
    assert "Traceback" not in captured.err


def test_a_pin_smuggled_past_the_audit_by_an_encoding_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Under a UTF-7 declaration pip decodes ``+AAo-`` to a line break: read as UTF-8 this is
    a comment, so a vulnerable pin would install unaudited."""
    version = pinned(LOCKS[0], "flask")
    lock = tmp_path / "lock.txt"
    lock.write_text(
        f"# -*- coding: utf-7 -*-\nalembic==1.0 {HASH}\n# +AAo-flask=={version} {HASH}\n",
        encoding="ascii",
    )
    assert "flask" in pip_reads(lock)
    db = write_db(tmp_path, [advisory("GHSA-test-lock-0040", "flask", version, "999.0")])
    assert main(["-r", str(lock), "--vuln-db", str(db)]) == 2
    assert "declares the encoding 'utf-7', not UTF-8" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("stamp", "as_of"),
    [
        ("2026-11-20T23:30:00-05:00", "2026-11-21T04:30:00+00:00"),
        ("2026-11-21t04:30:00.5z", "2026-11-21T04:30:00.500000+00:00"),
        ("2026-11-21T04:30:00.123456789Z", "2026-11-21T04:30:00.123456+00:00"),
    ],
)
def test_record_dates_are_read_in_utc(stamp: str, as_of: str) -> None:
    moment = modified({"id": "GHSA-test-age-0050", "modified": stamp})
    assert moment.isoformat() == as_of
    now = datetime(2026, 12, 1, 4, 29, tzinfo=UTC)
    age = DataAge(moment, from_records=True)
    assert age.describe(now) == "vulnerability data as of 2026-11-21, 9 days old"
    assert not age.is_stale(now, 9) and age.is_stale(now, 8) and not age.is_stale(now, 0)
