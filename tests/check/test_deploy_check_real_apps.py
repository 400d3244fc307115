"""Apps written the way Flask's docs and tutorials write them, as users run the check on.

Each case is a mistake (or a correct setup) seen in real code: Talisman left at its
defaults, a 500 handler that prints the traceback, a 404 page that formats the path
into HTML, a hand-written "allow everything" CORS hook.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask, got_request_exception, jsonify, render_template_string, request, session
from flask_talisman import Talisman
from werkzeug.exceptions import HTTPException, InternalServerError

from flask_deploy_check.findings import Severity
from flask_deploy_check.runner import Report, run_checks


@pytest.fixture(autouse=True)
def _no_flask_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    """The checks read FLASK_DEBUG; the developer's shell must not change results."""
    monkeypatch.delenv("FLASK_DEBUG", raising=False)


def quickstart(setup: Callable[[Flask], None] | None = None) -> Flask:
    """Flask's quickstart app with a random key, changed by ``setup``."""
    app = Flask(__name__)
    app.config["SECRET_KEY"] = secrets.token_hex(32)

    @app.get("/")
    def index() -> str:
        return "<p>Hello, World!</p>"

    if setup is not None:
        setup(app)
    return app


def ids(report: Report) -> set[str]:
    return {finding.id for finding in report.findings}


def messages(report: Report, check_id: str) -> list[str]:
    return [finding.message for finding in report.findings if finding.id == check_id]


# ------------------------------------------------------------- Talisman defaults ---
def _talisman_defaults(app: Flask) -> None:
    Talisman(app)

    @app.get("/sign-in")
    def sign_in() -> str:
        session["user"] = 1
        return "signed in"


@pytest.mark.asvs("V3.3.1")
def test_talisman_defaults_make_the_session_cookie_secure() -> None:
    # Talisman(app) sets SESSION_COOKIE_SECURE at the first request, so the setting read
    # before any request said "off": an error-level false alarm on the most common setup.
    app = quickstart(_talisman_defaults)

    report = run_checks(app, deploy=True)

    assert "BST-E101" not in ids(report)
    cookie = app.test_client().get("/sign-in", base_url="https://localhost").headers["Set-Cookie"]
    assert "Secure" in cookie, "what the check trusts is what the browser gets"


@pytest.mark.asvs("V3.3.1")
def test_talisman_in_debug_mode_leaves_the_session_cookie_insecure() -> None:
    app = quickstart(_talisman_defaults)
    app.debug = True
    assert messages(run_checks(app, deploy=True), "BST-E101")


# ------------------------------------------------------------- the 500 page ---
def _traceback_handler(app: Flask) -> None:
    @app.errorhandler(500)
    def server_error(error: InternalServerError) -> tuple[str, int]:
        return f"<pre>{traceback.format_exc()}</pre>", 500


def _exception_message_handler(app: Flask) -> None:
    @app.errorhandler(Exception)
    def any_error(error: Exception) -> Any:
        if isinstance(error, HTTPException):
            return error
        return jsonify(error=str(error)), 500


def _original_exception_handler(app: Flask) -> None:
    @app.errorhandler(InternalServerError)
    def server_error(error: InternalServerError) -> tuple[str, int]:
        return f"Something broke: {error.original_exception!r}", 500


def _generic_handler(app: Flask) -> None:
    @app.errorhandler(500)
    def server_error(error: InternalServerError) -> tuple[str, int]:
        return render_template_string("<h1>Sorry, something went wrong.</h1>"), 500


def _propagating_traceback_handler(app: Flask) -> None:
    _traceback_handler(app)
    app.config["PROPAGATE_EXCEPTIONS"] = True  # the server's own page answers instead


LEAKY_500: dict[str, tuple[Callable[[Flask], None], str | None]] = {
    "traceback.format_exc() in errorhandler(500)": (_traceback_handler, "Traceback"),
    "str(e) in errorhandler(Exception)": (_exception_message_handler, "exception's message"),
    "original_exception in errorhandler(InternalServerError)": (
        _original_exception_handler,
        "exception's message",
    ),
    "a generic page": (_generic_handler, None),
    "Flask's own page": (lambda app: None, None),
    "PROPAGATE_EXCEPTIONS": (_propagating_traceback_handler, None),
}


@pytest.mark.asvs("V16.5.1")
@pytest.mark.parametrize("name", list(LEAKY_500))
def test_the_page_shown_when_a_view_raises_is_inspected(name: str) -> None:
    # Only 404 and 405 pages were read: a 500 handler printing the traceback, the most
    # common way Flask apps leak internals, passed.
    setup, expected = LEAKY_500[name]
    report = run_checks(quickstart(setup))

    found = messages(report, "BST-E213")
    if expected is None:
        assert not found
    else:
        [message] = found
        assert "the page shown when a view raises (status 500)" in message
        assert expected in message
    assert not ids(report) & {"BST-I502", "BST-W501", "BST-E505"}, report.findings


@contextlib.contextmanager
def _signalled(app: Flask) -> Iterator[list[BaseException]]:
    """What ``got_request_exception`` (an error tracker's hook) is sent for ``app``."""
    signalled: list[BaseException] = []

    def receiver(sender: Flask, exception: BaseException, **extra: Any) -> None:
        signalled.append(exception)

    got_request_exception.connect(receiver, app)
    try:
        yield signalled
    finally:
        got_request_exception.disconnect(receiver, app)


def test_the_500_probe_is_not_reported_as_a_real_failure() -> None:
    # Error trackers (Sentry) listen to got_request_exception, and Flask logs what
    # handle_exception sees: the probe must reach neither.
    app = quickstart(_traceback_handler)
    with _signalled(app) as signalled, pytest.MonkeyPatch.context() as patch:
        logged: list[Any] = []
        patch.setattr(app, "log_exception", logged.append)
        run_checks(app)
    assert signalled == []
    assert logged == []


def test_the_500_probe_reaches_no_error_log_or_tracker_of_the_app_s_own_handler(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A handler of every exception that logs it and tells error reporting itself, as
    # Bastion's does (Flask signals only what no handler took): each run of the check put
    # an "unhandled error" with the probe's traceback in the log and an event in Sentry.
    def reporting_handler(app: Flask) -> None:
        @app.errorhandler(Exception)
        def any_error(error: Exception) -> Any:
            if isinstance(error, HTTPException):
                return error
            got_request_exception.send(app, exception=error)
            logging.getLogger("app.errors").exception("unhandled error")
            return "Something went wrong.", 500

    app = quickstart(reporting_handler)
    with _signalled(app) as signalled, caplog.at_level(logging.DEBUG):
        report = run_checks(app)
    assert signalled == []
    assert [r.getMessage() for r in caplog.records if r.name == "app.errors"] == []
    assert logging.getLogger("app.errors").isEnabledFor(logging.ERROR)  # on again after
    assert "BST-E213" not in ids(report)


@pytest.mark.asvs("V16.5.1")
def test_a_500_handler_that_itself_fails_is_an_unverified_error_check() -> None:
    def broken_handler(app: Flask) -> None:
        @app.errorhandler(500)
        def server_error(error: InternalServerError) -> str:
            raise LookupError("template 500.html not found")

    report = run_checks(quickstart(broken_handler))
    [message] = messages(report, "BST-E505")
    assert "BST-E213" in message
    assert "with a failing view raised LookupError: template 500.html not found" in message


# ------------------------------------------------------------- reflected paths ---
def _fstring_404(app: Flask) -> None:
    @app.errorhandler(404)
    def not_found(error: Exception) -> tuple[str, int]:
        return f"<h1>{request.path} was not found</h1>", 404


def _template_404(app: Flask) -> None:
    @app.errorhandler(404)
    def not_found(error: Exception) -> tuple[str, int]:
        return render_template_string("<h1>{{ request.path }} was not found</h1>"), 404


def _json_404(app: Flask) -> None:
    @app.errorhandler(404)
    def not_found(error: Exception) -> tuple[Any, int]:
        return jsonify(error="not found", path=request.path), 404


REFLECTING_404: dict[str, tuple[Callable[[Flask], None], bool]] = {
    "f-string into HTML": (_fstring_404, True),
    "Jinja template (escaped)": (_template_404, False),
    "JSON body": (_json_404, False),
}


@pytest.mark.asvs("V1.2.1")
@pytest.mark.parametrize("name", list(REFLECTING_404))
def test_a_404_page_that_reflects_the_path_unescaped_is_found(name: str) -> None:
    setup, fires = REFLECTING_404[name]
    report = run_checks(quickstart(setup))
    assert bool(messages(report, "BST-E216")) is fires, report.findings
    assert report.failed(Severity.ERROR) is fires, "reflected XSS fails the default level"


# ------------------------------------------------------------- CORS wildcard ---
@pytest.mark.asvs("V3.4.2")
@pytest.mark.parametrize("credentials", [False, True])
def test_a_wildcard_cors_hook_is_reported(credentials: bool) -> None:
    # Only a reflected Origin was reported: "*" (with or without credentials) passed.
    def allow_all(app: Flask) -> None:
        @app.after_request
        def cors(response: Any) -> Any:
            response.headers["Access-Control-Allow-Origin"] = "*"
            if credentials:
                response.headers["Access-Control-Allow-Credentials"] = "true"
            return response

    report = run_checks(quickstart(allow_all))
    [message] = messages(report, "BST-W215")
    assert ("Allow-Credentials" in message) is credentials
    assert not messages(report, "BST-E214"), "nothing is reflected"


@pytest.mark.asvs("V3.4.2")
def test_a_fixed_cors_origin_is_not_a_wildcard() -> None:
    def one_origin(app: Flask) -> None:
        @app.after_request
        def cors(response: Any) -> Any:
            response.headers["Access-Control-Allow-Origin"] = "https://app.example"
            return response

    report = run_checks(quickstart(one_origin))
    assert not ids(report) & {"BST-W215", "BST-E214"}
