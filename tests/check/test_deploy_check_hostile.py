"""Responses and settings crafted to fool the checks, and inputs that used to break them.

Each case is what a browser (or Flask-WTF, or a WSGI server) really does with an odd
header, not what a naive reading of the first header line suggests.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask, Response, redirect, request
from flask.cli import FlaskGroup
from werkzeug.debug import DebuggedApplication

from flask_deploy_check.cli import security
from flask_deploy_check.context import probe_host
from flask_deploy_check.runner import Report, run_checks
from tests.check import apps
from tests.check.test_deploy_check_cli import flask_group

SAFE_HEADERS = {
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains; preload",
    "Content-Security-Policy": "default-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}

Edit = Callable[[Response], None]


@pytest.fixture(autouse=True)
def _no_flask_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    """The checks read FLASK_DEBUG; the developer's shell must not change results."""
    monkeypatch.delenv("FLASK_DEBUG", raising=False)


def headers_app(edit: Edit) -> Flask:
    """The safe twin with its security headers written by hand, then changed by ``edit``."""

    def tweak(app: Flask) -> None:
        @app.after_request
        def security_headers(response: Response) -> Response:
            if request.scheme == "http":
                return redirect("https://example.com/", 301)  # type: ignore[return-value]
            for name, value in SAFE_HEADERS.items():
                response.headers[name] = value
            edit(response)
            return response

    return apps.make_app(apps.Variant(talisman=None, coop=False, tweak=tweak))


def messages(report: Report, check_id: str) -> list[str]:
    return [finding.message for finding in report.findings if finding.id == check_id]


def setter(name: str, value: str) -> Edit:
    def edit(response: Response) -> None:
        response.headers[name] = value

    return edit


def adder(name: str, value: str) -> Edit:
    def edit(response: Response) -> None:
        response.headers.add(name, value)

    return edit


def remove_xfo_then(edit: Edit) -> Edit:
    """Drop frame-ancestors' fallback first, so only ``edit`` decides about framing."""

    def both(response: Response) -> None:
        del response.headers["X-Frame-Options"]
        edit(response)
        if "frame-ancestors" not in response.headers[CSP]:
            response.headers.add("X-Frame-Options", "DENY")
            response.headers.add("X-Frame-Options", "deny")

    return both


def reflect_origin_padded(response: Response) -> None:
    response.headers["Access-Control-Allow-Origin"] = f"  {request.headers['Origin']} "


def allow_null_origin(response: Response) -> None:
    """An allowlist that names "null", a common way to let local files in."""
    if request.headers.get("Origin") in ("null", "https://app.example"):
        response.headers["Access-Control-Allow-Origin"] = request.headers["Origin"]
        response.headers["Access-Control-Allow-Credentials"] = "true"


def cookie_same_site_none(response: Response) -> None:
    response.set_cookie("sid", "x", secure=True, httponly=True, samesite="None")


CSP = "Content-Security-Policy"
STRICT_REST = "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"

# (check id, how the response is changed, fires?) -- fires=False are valid headers that a
# browser honours and that must not be reported.
CASES: dict[str, tuple[str, Edit, bool]] = {
    "referrer: unsafe-url in a second header wins": (
        "BST-W210",
        adder("Referrer-Policy", "unsafe-url"),
        True,
    ),
    "referrer: upper-case token is not a policy": (
        "BST-W210",
        setter("Referrer-Policy", "unsafe-url, NO-REFERRER"),
        True,
    ),
    "coop: two headers do not parse": (
        "BST-W211",
        adder("Cross-Origin-Opener-Policy", "unsafe-none"),
        True,
    ),
    "coop: the token is case-sensitive": (
        "BST-W211",
        setter("Cross-Origin-Opener-Policy", "Same-Origin"),
        True,
    ),
    "coop: parameters are allowed": (
        "BST-W211",
        setter("Cross-Origin-Opener-Policy", 'same-origin; report-to="coop"'),
        False,
    ),
    "csp: a comma starts a second policy": (
        "BST-W207",
        setter(CSP, f"{STRICT_REST}; script-src 'self' 'unsafe-inline', img-src 'self'"),
        True,
    ),
    "csp: script-src-elem overrides script-src": (
        "BST-W207",
        setter(CSP, f"default-src 'self'; script-src-elem 'self' 'unsafe-inline'; {STRICT_REST}"),
        True,
    ),
    "csp: script-src-attr allows inline handlers": (
        "BST-W207",
        setter(CSP, f"default-src 'self'; script-src-attr 'unsafe-inline'; {STRICT_REST}"),
        True,
    ),
    "csp: an empty nonce is no nonce": (
        "BST-W207",
        setter(CSP, f"default-src 'self'; script-src 'unsafe-inline' 'nonce-'; {STRICT_REST}"),
        True,
    ),
    "csp: frame-ancestors * lets anyone frame": (
        "BST-W207",
        setter(CSP, "default-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors *"),
        True,
    ),
    "framing: frame-ancestors https: overrides X-Frame-Options DENY": (
        "BST-W208",
        setter(CSP, "default-src 'self'; frame-ancestors https:"),
        True,
    ),
    "framing: empty frame-ancestors is 'none'": (
        "BST-W208",
        remove_xfo_then(setter(CSP, "default-src 'self'; frame-ancestors")),
        False,
    ),
    "framing: two DENY lines still deny": (
        "BST-W208",
        remove_xfo_then(setter(CSP, "default-src 'self'")),
        False,
    ),
    "hsts: a repeated max-age makes browsers ignore the header": (
        "BST-W201",
        setter("Strict-Transport-Security", "max-age=0; max-age=31536000; includeSubDomains"),
        True,
    ),
    "hsts: non-ASCII digits are no max-age": (
        "BST-W201",
        setter("Strict-Transport-Security", "max-age=\xb2; includeSubDomains; preload"),
        True,
    ),
    "hsts: spaces around = are allowed": (
        "BST-W201",
        setter("Strict-Transport-Security", "max-age = 31536000 ; includeSubDomains"),
        False,
    ),
    "nosniff: a list is read by its first item": (
        "BST-W209",
        setter("X-Content-Type-Options", "nosniff, nosniff"),
        False,
    ),
    "cookies: SameSite=None goes cross-site": ("BST-W111", cookie_same_site_none, True),
    "cookies: Max-Age wins over a past Expires": (
        "BST-W111",
        adder("Set-Cookie", "sid=abc; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=3600"),
        True,
    ),
    "cors: whitespace around a reflected origin": ("BST-E214", reflect_origin_padded, True),
    "cors: an allowlist naming the null origin": ("BST-E214", allow_null_origin, True),
}
ASVS = {
    "BST-W210": "V3.4.5",
    "BST-W207": "V3.4.3",
    "BST-W208": "V3.4.6",
    "BST-W201": "V3.4.1",
    "BST-W209": "V3.4.4",
    "BST-W111": "V3.3.2",
    "BST-E214": "V3.4.2",
}


def _case(name: str) -> Any:
    check_id = CASES[name][0]
    marks = [pytest.mark.asvs(ASVS[check_id])] if check_id in ASVS else []
    return pytest.param(name, id=name, marks=marks)


def test_hand_written_headers_are_clean() -> None:
    assert run_checks(headers_app(lambda response: None), deploy=True).findings == []


@pytest.mark.parametrize("name", [_case(name) for name in CASES])
def test_odd_headers_are_read_as_browsers_read_them(name: str) -> None:
    check_id, edit, fires = CASES[name]
    report = run_checks(headers_app(edit), deploy=True)
    assert bool(messages(report, check_id)) is fires, report.findings
    assert not messages(report, "BST-W501")


@pytest.mark.asvs("V16.5.1")
def test_non_utf8_error_page_is_still_inspected() -> None:
    def latin1_traceback(response: Response) -> None:
        if response.status_code == 404:
            response.set_data(b"Fehler \xfc\nTraceback (most recent call last):\n")

    report = run_checks(headers_app(latin1_traceback), deploy=True)
    assert messages(report, "BST-E213")
    assert not messages(report, "BST-W501")


def test_an_endless_page_does_not_hang_the_run() -> None:
    def endless(app: Flask) -> None:
        def index() -> Response:
            def forever() -> Iterator[bytes]:
                while True:
                    yield b"x" * 65_536

            return Response(forever())

        app.view_functions["index"] = index

    done: list[Report] = []
    worker = threading.Thread(
        target=lambda: done.append(run_checks(apps.make_app(apps.Variant(tweak=endless)))),
        daemon=True,
    )
    worker.start()
    worker.join(30)
    assert done, "the check run did not finish on a streaming index page"
    assert done[0].findings == []


def test_trusted_hosts_as_one_string_is_one_host() -> None:
    app = apps.make_app(apps.Variant(config={"TRUSTED_HOSTS": "example.com"}))
    assert probe_host(app) == "example.com"
    assert run_checks(app, deploy=True).findings == []


class Wrapper:
    """Middleware in WhiteNoise's style: the wrapped app lives in ``.application``."""

    def __init__(self, application: Any) -> None:
        self.application = application

    def __call__(self, environ: Any, start_response: Any) -> Any:
        return self.application(environ, start_response)


@pytest.mark.asvs("V13.4.2")
def test_debugger_hidden_under_other_middleware_is_found() -> None:
    def wrap(app: Flask) -> None:
        app.wsgi_app = Wrapper(  # type: ignore[method-assign]
            DebuggedApplication(app.wsgi_app, evalex=True)
        )

    report = run_checks(apps.make_app(apps.Variant(tweak=wrap)), deploy=True)
    assert messages(report, "BST-E002")
    assert not messages(report, "BST-W305"), "the ProxyFix inside is found too"


@pytest.mark.asvs("V3.5.1")
@pytest.mark.parametrize(
    ("methods", "fires"),
    [([], True), (["PUT"], True), (["post"], True), (["POST"], False)],
)
def test_csrf_methods_that_skip_post_are_no_protection(methods: list[str], fires: bool) -> None:
    app = apps.make_app(apps.Variant(config={"WTF_CSRF_METHODS": methods}))
    assert bool(messages(run_checks(app), "BST-E301")) is fires


def test_control_characters_from_headers_are_escaped() -> None:
    report = run_checks(headers_app(setter("Server", "nginx/1.2\x1b[2J\x07")), deploy=True)
    [message] = messages(report, "BST-W212")
    assert "\x1b" not in message
    assert "\x07" not in message
    assert "\\x1b[2J" in message


def test_json_stays_parseable_when_the_app_prints() -> None:
    def create_app() -> Flask:
        print("Create the first admin at http://127.0.0.1:5000/setup/one-time-token")
        return apps.safe_app()

    result = CliRunner().invoke(flask_group(create_app), ["security", "check", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["findings"] == []
    assert "setup/one-time-token" in result.stderr


# ------------------------------------------------------- apps that do not load ---
def _check_cli() -> FlaskGroup:
    """``flask`` with only the plugin, loading whatever ``--app`` names."""
    group = FlaskGroup(add_default_commands=False)
    group.add_command(security)
    return group


@pytest.mark.asvs("V16.5.3")
@pytest.mark.parametrize("code", [0, None, 3])
def test_an_app_that_exits_while_loading_fails_the_check(code: int | None) -> None:
    # sys.exit(0) in the factory (a usage message, say) ended the check with exit status 0
    # and an empty report: a CI gate passed without a single check having run.
    def create_app() -> Flask:
        print("usage: set DATABASE_URL first")
        raise SystemExit(code)

    result = CliRunner().invoke(flask_group(create_app), ["security", "check", "--format", "json"])

    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert f"could not load the application: it called sys.exit({code!r})" in result.stderr


@pytest.mark.asvs("V16.5.1")
def test_an_import_error_inside_the_app_is_one_line_without_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Flask puts the formatted traceback of an ImportError raised inside the app's module in
    # its message, and the check printed it whole.
    (tmp_path / "broken_import_app.py").write_text("import no_such_module_for_the_check\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "broken_import_app", raising=False)

    result = CliRunner().invoke(_check_cli(), ["--app", "broken_import_app", "security", "check"])

    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert (
        "Error: could not load the application: NoAppException: While importing "
        "'broken_import_app', an ImportError was raised: ModuleNotFoundError: No module "
        "named 'no_such_module_for_the_check'\n"
    ) in result.output


def test_control_characters_in_a_load_error_are_escaped_and_lines_kept() -> None:
    def create_app() -> Flask:
        raise RuntimeError("refusing to start:\n  - SECRET\x1b[2J_KEY is missing")

    result = CliRunner().invoke(flask_group(create_app), ["security", "check"])

    assert result.exit_code == 2
    assert "\x1b" not in result.output
    assert "RuntimeError: refusing to start:\n  - SECRET\\x1b[2J_KEY is missing" in result.output


# ----------------------------------------------------------------- odd settings ---
@pytest.mark.asvs("V11.2.3")
@pytest.mark.parametrize("key", [12345, ["dev"]])
def test_a_secret_key_flask_cannot_use_is_reported(key: object) -> None:
    # Only text and bytes were looked at: a number or a list (every session a 500) gave
    # no finding at all in deploy mode.
    report = run_checks(apps.make_app(apps.Variant(config={"SECRET_KEY": key})), deploy=True)
    [message] = messages(report, "BST-E003")
    assert f"SECRET_KEY is of type {type(key).__name__}, not text or bytes" in message


def test_one_repeated_character_has_zero_bits_not_minus_zero() -> None:
    app = apps.make_app(apps.Variant(config={"SECRET_KEY": b"\x00" * 40}))
    [message] = messages(run_checks(app, deploy=True), "BST-W006")
    assert "about 0 bits" in message


@pytest.mark.parametrize("silenced", ["BST-E301", "BST-W104, BST-E301"])
def test_silenced_ids_given_as_one_string_are_ids_not_characters(silenced: str) -> None:
    # A string was read as a set of its characters, which silenced nothing.
    app = apps.make_app(apps.UNSAFE["BST-E301"])
    app.config["DEPLOY_CHECK_SILENCED"] = silenced
    report = run_checks(app)
    assert not messages(report, "BST-E301")
    assert report.silenced == 1
