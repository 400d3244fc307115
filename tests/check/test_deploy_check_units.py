"""Unit tests of the building blocks: secret analysis, header parsing, WSGI inspection."""

from __future__ import annotations

import ast
import secrets
from dataclasses import replace
from pathlib import Path

import pytest
from flask import Flask
from werkzeug.debug import DebuggedApplication
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.middleware.proxy_fix import ProxyFix

import flask_deploy_check
from flask_deploy_check import headers as h
from flask_deploy_check.config_checks import estimated_bits, is_sample_secret
from flask_deploy_check.context import describe_exception, probe_host
from flask_deploy_check.docs import render_markdown
from flask_deploy_check.findings import Severity
from flask_deploy_check.registry import ID_PATTERN, REGISTRY, all_specs
from flask_deploy_check.runner import run_checks, selected_specs
from flask_deploy_check.wsgi import instances_of, wsgi_chain
from tests.check import apps

PACKAGE = Path(flask_deploy_check.__file__).parent
DOC = Path(__file__).resolve().parents[2] / "docs" / "security-check.md"


@pytest.fixture(autouse=True)
def _no_flask_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    """The checks read FLASK_DEBUG; the developer's shell must not change results."""
    monkeypatch.delenv("FLASK_DEBUG", raising=False)


@pytest.mark.asvs("V13.3.1")
@pytest.mark.parametrize(
    "key",
    [
        "dev",
        "you-will-never-guess",
        "Change Me",
        "changeme-in-production",
        "super-secret",
        "default_secret",
        "SECRET_KEY",
        "django-insecure-abc",
        b'_5#y2L"F4Q8z\n\xec]/',
        "192b9bdd22ab9ed4d12e236c78afcb9a393ec15f71bbf5dc987d54727823bcbf",
    ],
)
def test_sample_secrets_are_recognised(key: str | bytes) -> None:
    assert is_sample_secret(key)


@pytest.mark.asvs("V11.2.3")
def test_random_keys_are_not_samples_and_have_entropy() -> None:
    for key in (secrets.token_hex(32), secrets.token_urlsafe(32), secrets.token_bytes(32)):
        assert not is_sample_secret(key)
        assert estimated_bits(key) > 96
    assert estimated_bits("a" * 64) == 0


def test_ids_are_unique_well_formed_and_documented() -> None:
    specs = all_specs()
    assert len({spec.id[-3:] for spec in specs}) == len(specs)
    for spec in specs:
        assert ID_PATTERN.match(spec.id)
        assert spec.title
        assert spec.why
        assert spec.fix
        assert spec.severity is Severity.from_check_id(spec.id)


def test_documentation_lists_every_check_and_is_current() -> None:
    text = DOC.read_text(encoding="utf-8")
    for spec in all_specs():
        assert f"### {spec.id}" in text
    assert text == render_markdown(), "run: python -m flask_deploy_check.docs " + str(DOC)


def test_package_never_imports_bastion() -> None:
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(name.split(".")[0] == "bastion" for name in names), path


def test_dev_mode_runs_no_deploy_only_checks() -> None:
    assert not any(spec.deploy for spec in selected_specs(deploy=False, deps=False))
    report = run_checks(apps.make_app(apps.UNSAFE["BST-E001"]), deploy=False)
    assert report.findings == []


@pytest.mark.asvs("V3.4.3")
@pytest.mark.parametrize(
    ("policy", "problems"),
    [
        ("default-src 'none'; base-uri 'none'; frame-ancestors 'none'", []),
        (
            "script-src 'nonce-abc' 'unsafe-inline' 'strict-dynamic' https:; object-src 'none'; "
            "base-uri 'self'; frame-ancestors 'self'",
            [],
        ),
        (
            "default-src 'self'",
            ["object-src is not 'none'", "base-uri is not 'none' or 'self'", "no frame-ancestors"],
        ),
        (
            "script-src 'unsafe-eval' *; object-src 'none'; base-uri 'none'; "
            "frame-ancestors 'none'",
            ["script-src allows 'unsafe-eval'", "script-src allows scripts from any host"],
        ),
        (
            "object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
            ["no script-src or default-src"],
        ),
    ],
)
def test_csp_strictness(policy: str, problems: list[str]) -> None:
    assert h.policy_problems(h.parse_csp(policy)) == problems


@pytest.mark.asvs("V3.4.1")
def test_hsts_parsing() -> None:
    assert h.parse_hsts(None) is None
    parsed = h.parse_hsts('max-age="31536000"; includeSubDomains; preload')
    assert parsed == h.Hsts(31_536_000, True, True)
    assert h.parse_hsts("includeSubDomains") == h.Hsts(
        None, True, False, "has no max-age directive"
    )


@pytest.mark.asvs("V3.4.5")
def test_referrer_policy_takes_the_last_known_token() -> None:
    assert h.referrer_policy("unsafe-url, no-such-thing") == "unsafe-url"
    assert h.referrer_policy("no-referrer, strict-origin-when-cross-origin") == (
        "strict-origin-when-cross-origin"
    )
    assert h.referrer_policy("bogus") is None


def test_set_cookie_parsing() -> None:
    cookie = h.parse_set_cookie("sid=abc; Secure; HttpOnly; SameSite=Lax; Path=/")
    assert cookie.name == "sid"
    assert {"secure", "httponly", "samesite"} <= set(cookie.attributes)
    assert h.parse_set_cookie("sid=; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0").deleting


@pytest.mark.asvs("V16.5.1")
def test_error_page_markers() -> None:
    assert h.leak_marker('File "/app/views.py", line 12, in index') is not None
    assert h.leak_marker("<h1>Not Found</h1><p>The requested URL was not found.</p>") is None


@pytest.mark.asvs("V13.4.2", "V4.1.3")
def test_wsgi_chain_finds_nested_middleware() -> None:
    app = Flask("chain")
    other = Flask("other")
    app.wsgi_app = DispatcherMiddleware(  # type: ignore[method-assign]
        ProxyFix(app.wsgi_app), {"/debug": DebuggedApplication(other.wsgi_app)}
    )
    kinds = [type(obj).__name__ for obj in wsgi_chain(app)]
    assert kinds == ["DispatcherMiddleware", "ProxyFix", "DebuggedApplication"]
    assert len(instances_of(app, "werkzeug.debug", "DebuggedApplication")) == 1


def test_probe_host_prefers_server_name_then_trusted_hosts() -> None:
    app = Flask("hosts")
    assert probe_host(app) == "localhost"
    app.config["TRUSTED_HOSTS"] = [".example.org", "other.example"]
    assert probe_host(app) == "example.org"
    app.config["SERVER_NAME"] = "www.example.net"
    assert probe_host(app) == "www.example.net"


def test_exception_descriptions_are_one_bounded_line() -> None:
    text = describe_exception(ValueError("line one\nline two " + "x" * 500))
    assert "\n" not in text
    assert len(text) <= 240
    assert text.startswith("ValueError: line one")


def test_a_crashing_check_becomes_a_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(ctx: object) -> None:
        raise KeyError("surprise")

    monkeypatch.setitem(REGISTRY, "BST-W302", replace(REGISTRY["BST-W302"], func=boom))
    report = run_checks(apps.safe_app(), deploy=True)
    [finding] = report.findings
    assert finding.id == "BST-W501"
    assert finding.message == "could not run check BST-W302: KeyError: 'surprise'"


def test_a_crashing_error_level_check_fails_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(ctx: object) -> None:
        raise KeyError("surprise")

    monkeypatch.setitem(REGISTRY, "BST-E301", replace(REGISTRY["BST-E301"], func=boom))
    report = run_checks(apps.safe_app(), deploy=True)
    [finding] = report.findings
    assert finding.id == "BST-E505"
    assert report.failed(Severity.ERROR)


def test_flask_debug_in_the_environment_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLASK_DEBUG", "1")
    report = run_checks(apps.safe_app(), deploy=True)
    assert "BST-E001" in {finding.id for finding in report.findings}


@pytest.mark.asvs("V16.2.5")
@pytest.mark.parametrize(
    ("config", "fires"),
    [
        ({"MAIL_DEBUG": True}, True),
        ({"MAIL_DEBUG": 1}, True),
        ({"MAIL_BACKEND": "file", "MAIL_FILE_PATH": "/tmp/mail"}, True),
        ({"MAIL_BACKEND": "flask_mailman.backends.console.EmailBackend"}, True),
        ({"MAIL_DEBUG": False, "MAIL_BACKEND": "smtp"}, False),
        ({"MAIL_BACKEND": "flask_mailman.backends.smtp.EmailBackend"}, False),
    ],
)
def test_mail_written_to_the_log_or_files_is_found(config: dict[str, object], fires: bool) -> None:
    """Flask-Mail's SMTP debugging and Flask-Mailman's console and file backends put every
    message, with its reset or sign-in link, where readers of logs and disks find it."""
    report = run_checks(apps.make_app(apps.Variant(config=config)), deploy=True)
    assert ("BST-W404" in {f.id for f in report.findings}) is fires
