"""The ``flask security check`` command: exit codes, JSON schema, text output, real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner, Result
from flask import Flask
from flask.cli import FlaskGroup

from flask_deploy_check import cli
from flask_deploy_check.registry import all_specs
from tests.check import apps
from tests.check.fixtures import schema

ROOT = Path(__file__).resolve().parents[2]
ANSI = "\x1b["


@pytest.fixture(autouse=True)
def _no_flask_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    """The checks read FLASK_DEBUG; the developer's shell must not change results."""
    monkeypatch.delenv("FLASK_DEBUG", raising=False)


def invoke(app: Flask, *args: str) -> Result:
    return app.test_cli_runner().invoke(args=["security", "check", *args])


def as_json(result: Result) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(result.output)
    jsonschema.validate(document, schema())
    return document


def test_schema_is_a_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(schema())


# (app builder, mode flags, exit code at --fail-level error, at --fail-level warning)
EXIT_CASES = {
    "safe twin": (apps.safe_app, ["--deploy"], 0, 0),
    "info only": (lambda: apps.make_app(apps.UNSAFE["BST-I303"]), ["--deploy"], 0, 0),
    "warning only": (lambda: apps.make_app(apps.UNSAFE["BST-W302"]), [], 0, 1),
    "error": (lambda: apps.make_app(apps.UNSAFE["BST-E301"]), [], 1, 1),
    "deploy-only error": (lambda: apps.make_app(apps.UNSAFE["BST-E001"]), ["--deploy"], 1, 1),
    "deploy-only error, dev mode": (lambda: apps.make_app(apps.UNSAFE["BST-E001"]), [], 0, 0),
}


@pytest.mark.parametrize("case", list(EXIT_CASES))
@pytest.mark.parametrize("fail_level", ["error", "warning"])
def test_exit_code_follows_fail_level(case: str, fail_level: str) -> None:
    build, flags, at_error, at_warning = EXIT_CASES[case]
    result = invoke(build(), *flags, "--fail-level", fail_level, "--format", "json")
    expected = at_error if fail_level == "error" else at_warning
    assert result.exit_code == expected, result.output
    assert as_json(result)["summary"]["failed"] is bool(expected)


def test_default_fail_level_is_error() -> None:
    assert invoke(apps.make_app(apps.UNSAFE["BST-W302"])).exit_code == 0
    assert invoke(apps.make_app(apps.UNSAFE["BST-E301"])).exit_code == 1


@pytest.mark.asvs("V13.4.2", "V3.5.1", "V1.2.1")
def test_json_output_validates_and_is_stable() -> None:
    result = invoke(apps.unsafe_app(), "--deploy", "--format", "json")
    document = as_json(result)
    assert document["version"] == 1
    assert document["app"] == "tests.check.apps"
    ids = [finding["id"] for finding in document["findings"]]
    assert "BST-E004" in ids
    assert "BST-E301" in ids
    severities = [finding["severity"] for finding in document["findings"]]
    order = {"error": 0, "warning": 1, "info": 2}
    assert severities == sorted(severities, key=order.__getitem__)
    summary = document["summary"]
    assert summary["total"] == len(ids) == summary["error"] + summary["warning"] + summary["info"]
    assert summary["deploy"] is True
    assert summary["deps"] is False


def test_text_output_is_a_table_without_colour_off_tty() -> None:
    result = invoke(apps.unsafe_app(), "--deploy")
    assert result.exit_code == 1
    assert "ID" in result.output
    assert "SEVERITY" in result.output
    assert "BST-E004" in result.output
    assert "why:" in result.output
    assert "fix:" in result.output
    assert ANSI not in result.output
    assert "FAILED" in result.output


def test_text_output_is_coloured_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "use_colour", lambda: True)
    result = invoke(apps.unsafe_app(), "--deploy")
    assert ANSI in result.output


@pytest.mark.parametrize(
    ("tty", "no_color", "expected"),
    [
        (True, None, True),
        (True, "1", False),
        (False, None, False),
    ],
)
def test_colour_only_on_tty_without_no_color(
    monkeypatch: pytest.MonkeyPatch, tty: bool, no_color: str | None, expected: bool
) -> None:
    monkeypatch.setattr(sys.stdout, "isatty", lambda: tty, raising=False)
    if no_color is None:
        monkeypatch.delenv("NO_COLOR", raising=False)
    else:
        monkeypatch.setenv("NO_COLOR", no_color)
    assert cli.use_colour() is expected


def test_safe_app_text_output_says_no_problems() -> None:
    result = invoke(apps.safe_app(), "--deploy")
    assert result.exit_code == 0
    assert "No problems found." in result.output


def test_ignore_silences_and_counts() -> None:
    app = apps.make_app(apps.UNSAFE["BST-E301"])
    document = as_json(invoke(app, "--format", "json", "--ignore", "BST-E301"))
    assert document["findings"] == []
    assert document["summary"]["silenced"] == 1


def test_config_key_silences_checks() -> None:
    app = apps.make_app(apps.UNSAFE["BST-E301"])
    app.config["DEPLOY_CHECK_SILENCED"] = ["BST-E301"]
    result = invoke(app)
    assert result.exit_code == 0


def test_unknown_ignore_id_is_a_usage_error() -> None:
    result = invoke(apps.safe_app(), "--ignore", "BST-E999")
    assert result.exit_code == 2
    assert "unknown check id" in result.output


def test_list_command_prints_every_id() -> None:
    result = apps.safe_app().test_cli_runner().invoke(args=["security", "list"])
    assert result.exit_code == 0
    for spec in all_specs():
        assert spec.id in result.output


@pytest.mark.asvs("V16.5.1")
@pytest.mark.parametrize("check_id", ["BST-W501", "BST-I502"])
def test_failing_index_is_reported_without_traceback(
    check_id: str, capfd: pytest.CaptureFixture[str]
) -> None:
    result = invoke(apps.make_app(apps.UNSAFE[check_id]), "--deploy")
    captured = capfd.readouterr()
    assert check_id in result.output
    assert "database is not reachable" in result.output
    for text in (result.output, captured.out, captured.err):
        assert "Traceback" not in text


@pytest.mark.asvs("V16.5.1")
def test_an_error_level_check_that_could_not_run_fails_the_run() -> None:
    """A / that raises hides the error-level live checks (E214's CORS probe among them):
    the default fail level must not read that as a pass."""
    result = invoke(apps.make_app(apps.UNSAFE["BST-E505"]), "--deploy", "--format", "json")
    assert result.exit_code == 1
    [failure] = [f for f in as_json(result)["findings"] if f["id"] == "BST-E505"]
    assert "BST-E214" in failure["message"]
    assert "BST-W206" not in failure["message"]  # warnings are reported as W501


def test_live_failures_are_grouped_per_request() -> None:
    document = as_json(invoke(apps.make_app(apps.UNSAFE["BST-W501"]), "--format", "json"))
    failures = [f for f in document["findings"] if f["id"] == "BST-W501"]
    assert len(failures) == 1
    assert "BST-W206" in failures[0]["message"]
    assert "GET https://example.com/" in failures[0]["message"]


def run_flask(app: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The real ``flask`` CLI in a child process, as an operator or CI would run it."""
    env = {**os.environ, "NO_COLOR": "1"}
    for name in ("FLASK_APP", "FLASK_DEBUG"):
        env.pop(name, None)
    command = [sys.executable, "-m", "flask", "--app", app, "security", "check", *args]
    return subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.asvs("V13.4.2", "V3.5.1", "V1.2.1")
def test_real_cli_subprocess() -> None:
    completed = run_flask("tests.check.apps:unsafe_app", "--deploy", "--format", "json")
    assert completed.returncode == 1, completed.stderr
    document = json.loads(completed.stdout)
    jsonschema.validate(document, schema())
    assert {"BST-E004", "BST-E301", "BST-E401"} <= {f["id"] for f in document["findings"]}
    assert "Traceback" not in completed.stderr


def flask_group(create_app: Callable[[], Flask]) -> FlaskGroup:
    """A ``flask`` command line like the real one, with ``security`` as its plugin."""
    group = FlaskGroup(create_app=create_app, add_default_commands=False)
    group.add_command(cli.security)
    return group


@pytest.mark.asvs("V13.4.2")
def test_cli_sees_the_apps_own_debug_setting() -> None:
    """The Flask CLI would reset app.debug from FLASK_DEBUG; gunicorn would not."""
    result = CliRunner().invoke(flask_group(apps.debug_app), ["security", "check", "--deploy"])
    assert result.exit_code == 1
    assert "BST-E001" in result.output


def test_app_that_refuses_to_start_is_a_clean_error() -> None:
    def create_app() -> Flask:
        raise RuntimeError("SECRET_KEY is missing")

    result = CliRunner().invoke(flask_group(create_app), ["security", "check"])
    assert result.exit_code == 2
    assert "could not load the application: RuntimeError: SECRET_KEY is missing" in result.output
    assert "Traceback" not in result.output
