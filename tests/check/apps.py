"""Small Flask apps for the security check tests: one safe twin and one unsafe variant per id.

The safe twin is what a hardened Flask app looks like (Flask-Talisman, Flask-WTF,
Flask-Limiter, Flask-Login, ProxyFix, Flask 3.1 TRUSTED_HOSTS). Each unsafe variant
changes exactly the thing one check looks for.
"""

from __future__ import annotations

import secrets
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from flask import Flask, Response, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_talisman import Talisman
from flask_wtf.csrf import CSRFProtect
from werkzeug.debug import DebuggedApplication
from werkzeug.middleware.proxy_fix import ProxyFix

from flask_deploy_check.cli import security

REDIS_URI = "redis://127.0.0.1:6379"  # never contacted: no limits are evaluated
STRICT_CSP = {
    "default-src": "'self'",
    "script-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'none'",
    "frame-ancestors": "'none'",
    "form-action": "'self'",
}
SAFE_TALISMAN: dict[str, Any] = {
    "force_https": True,
    "strict_transport_security": True,
    "strict_transport_security_max_age": 31_536_000,
    "strict_transport_security_include_subdomains": True,
    "strict_transport_security_preload": True,
    "content_security_policy": STRICT_CSP,
    "content_security_policy_nonce_in": ["script-src"],
    "referrer_policy": "strict-origin-when-cross-origin",
    "frame_options": "DENY",
    "session_cookie_secure": True,
    "session_cookie_http_only": True,
    "x_content_type_options": True,
}


def safe_config() -> dict[str, Any]:
    """Configuration of the safe twin."""
    return {
        "SECRET_KEY": secrets.token_hex(32),
        "SESSION_COOKIE_NAME": "__Host-session",
        "SESSION_COOKIE_SECURE": True,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "PERMANENT_SESSION_LIFETIME": timedelta(hours=8),
        "REMEMBER_COOKIE_NAME": "__Host-remember",
        "REMEMBER_COOKIE_SECURE": True,
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        "REMEMBER_COOKIE_DURATION": timedelta(days=14),
        "MAX_CONTENT_LENGTH": 10 * 1024 * 1024,
        "MAX_FORM_MEMORY_SIZE": 200_000,
        "MAX_FORM_PARTS": 100,
        "TRUSTED_HOSTS": ["example.com"],
        "PREFERRED_URL_SCHEME": "https",
        "PROXY_HOPS": 1,
        "RATELIMIT_STORAGE_URI": REDIS_URI,
    }


@dataclass
class Variant:
    """How an app differs from the safe twin."""

    config: dict[str, Any] = field(default_factory=dict)
    talisman: dict[str, Any] | None = field(default_factory=dict)
    csrf: bool = True
    limiter: bool = True
    proxy_fix: dict[str, int] | None = field(
        default_factory=lambda: {"x_for": 1, "x_proto": 1, "x_host": 1}
    )
    coop: bool = True
    login: bool = True
    tweak: Callable[[Flask], None] | None = None


def make_app(variant: Variant | None = None) -> Flask:
    """Build the safe twin, or a variant of it."""
    variant = variant or Variant()
    app = Flask("tests.check.apps")
    app.config.update(safe_config())
    app.config.update(variant.config)

    @app.get("/")
    def index() -> str:
        return "ok"

    @app.post("/submit")
    def submit() -> str:
        return "saved"

    if variant.talisman is not None:
        Talisman(app, **{**SAFE_TALISMAN, **variant.talisman})
    if variant.csrf:
        CSRFProtect(app)
    if variant.limiter:
        Limiter(get_remote_address, app=app)
    if variant.login:
        LoginManager(app)
    if variant.coop:

        @app.after_request
        def add_coop(response: Response) -> Response:
            response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
            return response

    if variant.proxy_fix is not None:
        app.wsgi_app = ProxyFix(app.wsgi_app, **variant.proxy_fix)  # type: ignore[method-assign]
    app.config.update(variant.config)  # again: Talisman rewrites cookie settings at init
    if variant.tweak is not None:
        variant.tweak(app)
    app.cli.add_command(security)
    return app


def _debugger(app: Flask) -> None:
    app.wsgi_app = DebuggedApplication(app.wsgi_app, evalex=True)  # type: ignore[method-assign]


def _cookie_on_index(app: Flask) -> None:
    @app.after_request
    def track(response: Response) -> Response:
        response.set_cookie("tracking", "1")
        return response


def _server_banner(app: Flask) -> None:
    @app.after_request
    def banner(response: Response) -> Response:
        response.headers["Server"] = "Werkzeug/3.1.3 Python/3.11.7"
        return response


def _traceback_404(app: Flask) -> None:
    @app.errorhandler(404)
    def not_found(error: Exception) -> tuple[str, int]:
        stack = "".join(traceback.format_stack())
        return f"<pre>Traceback (most recent call last):\n{stack}{error!r}</pre>", 404


def _reflect_origin(app: Flask) -> None:
    @app.after_request
    def cors(response: Response) -> Response:
        response.headers["Access-Control-Allow-Origin"] = request.headers.get("Origin", "*")
        response.headers["Access-Control-Allow-Credentials"] = "true"
        return response


def _wildcard_cors(app: Flask) -> None:
    """What a hand-written "allow everything" hook looks like."""

    @app.after_request
    def cors(response: Response) -> Response:
        response.headers["Access-Control-Allow-Origin"] = "*"
        response.headers["Access-Control-Allow-Credentials"] = "true"
        return response


def _path_in_404(app: Flask) -> None:
    """The classic reflected XSS: the requested path formatted into the 404 page."""

    @app.errorhandler(404)
    def not_found(error: Exception) -> tuple[str, int]:
        return f"<h1>Page {request.path} not found</h1>", 404


def _traceback_500(app: Flask) -> None:
    """A 500 handler that shows the developer what went wrong, and everyone else too."""

    @app.errorhandler(500)
    def server_error(error: Exception) -> tuple[str, int]:
        return f"<pre>{traceback.format_exc()}</pre>", 500


def _trace_route(app: Flask) -> None:
    @app.route("/echo", methods=["GET", "TRACE"])
    def echo() -> str:
        return "echo"


def _no_autoescape(app: Flask) -> None:
    app.jinja_env.autoescape = False


def _failing_index(app: Flask) -> None:
    def index() -> str:
        raise RuntimeError("database is not reachable")

    app.view_functions["index"] = index


def _propagating_failure(app: Flask) -> None:
    _failing_index(app)
    app.config["PROPAGATE_EXCEPTIONS"] = True


UNSAFE: dict[str, Variant] = {
    "BST-E001": Variant(tweak=lambda app: setattr(app, "debug", True)),
    "BST-E002": Variant(tweak=_debugger),
    "BST-E003": Variant(config={"SECRET_KEY": None}),
    "BST-E004": Variant(config={"SECRET_KEY": "you-will-never-guess"}),
    "BST-W005": Variant(config={"SECRET_KEY": secrets.token_hex(8)}),
    "BST-W006": Variant(config={"SECRET_KEY": "ab" * 32}),
    "BST-W007": Variant(config={"SECRET_KEY_FALLBACKS": ["changeme"]}),
    "BST-W008": Variant(config={"TESTING": True}),
    "BST-E009": Variant(config={"LOGIN_DISABLED": True}),
    "BST-E101": Variant(
        config={"SESSION_COOKIE_SECURE": False}, talisman={"session_cookie_secure": False}
    ),
    "BST-W102": Variant(
        config={"SESSION_COOKIE_HTTPONLY": False}, talisman={"session_cookie_http_only": False}
    ),
    "BST-W103": Variant(config={"SESSION_COOKIE_SAMESITE": None}),
    "BST-W104": Variant(config={"SESSION_COOKIE_NAME": "session"}),
    "BST-W105": Variant(config={"SESSION_COOKIE_DOMAIN": "example.com"}),
    "BST-W106": Variant(config={"PERMANENT_SESSION_LIFETIME": timedelta(days=31)}),
    "BST-E107": Variant(config={"REMEMBER_COOKIE_SECURE": False}),
    "BST-W108": Variant(config={"REMEMBER_COOKIE_SAMESITE": None}),
    "BST-W109": Variant(config={"REMEMBER_COOKIE_NAME": "remember_token"}),
    "BST-W110": Variant(config={"REMEMBER_COOKIE_DURATION": timedelta(days=365)}),
    "BST-W111": Variant(tweak=_cookie_on_index),
    "BST-W201": Variant(talisman={"strict_transport_security": False}),
    "BST-W202": Variant(talisman={"strict_transport_security_include_subdomains": False}),
    "BST-I203": Variant(talisman={"strict_transport_security_preload": False}),
    "BST-W204": Variant(talisman={"force_https": False}),
    "BST-W205": Variant(config={"PREFERRED_URL_SCHEME": "http"}),
    "BST-W206": Variant(talisman={"content_security_policy": None}),
    "BST-W207": Variant(
        talisman={
            "content_security_policy": {
                "default-src": "'self'",
                "script-src": "'self' 'unsafe-inline'",
            },
            "content_security_policy_nonce_in": None,
        }
    ),
    "BST-W208": Variant(
        talisman={"frame_options": None, "content_security_policy": {"default-src": "'self'"}}
    ),
    "BST-W209": Variant(talisman={"x_content_type_options": False}),
    "BST-W210": Variant(talisman={"referrer_policy": "unsafe-url"}),
    "BST-W211": Variant(coop=False),
    "BST-W212": Variant(tweak=_server_banner),
    "BST-E213": Variant(tweak=_traceback_404),
    "BST-E214": Variant(tweak=_reflect_origin),
    "BST-W215": Variant(tweak=_wildcard_cors),
    "BST-E216": Variant(tweak=_path_in_404),
    "BST-E301": Variant(csrf=False),
    "BST-W302": Variant(config={"MAX_CONTENT_LENGTH": None}),
    "BST-I303": Variant(config={"MAX_FORM_MEMORY_SIZE": 500_000, "MAX_FORM_PARTS": 1_000}),
    "BST-W304": Variant(config={"TRUSTED_HOSTS": None}),
    "BST-W305": Variant(proxy_fix=None),
    "BST-W306": Variant(proxy_fix={"x_for": 3, "x_proto": 3}),
    "BST-W307": Variant(limiter=False),
    "BST-W308": Variant(config={"RATELIMIT_STORAGE_URI": "memory://"}),
    "BST-W309": Variant(tweak=_trace_route),
    "BST-E401": Variant(tweak=_no_autoescape),
    "BST-W402": Variant(config={"SQLALCHEMY_ECHO": True}),
    "BST-W403": Variant(config={"TEMPLATES_AUTO_RELOAD": True}),
    "BST-W404": Variant(config={"MAIL_BACKEND": "console"}),
    "BST-W501": Variant(tweak=_propagating_failure),
    "BST-E505": Variant(tweak=_propagating_failure),
    "BST-I502": Variant(tweak=_failing_index),
}


def safe_app() -> Flask:
    """The hardened twin (``flask --app tests.check.apps:safe_app``)."""
    return make_app()


def debug_app() -> Flask:
    """The safe twin with DEBUG switched on in its own configuration."""
    app = make_app()
    app.config["DEBUG"] = True
    return app


def unsafe_app() -> Flask:
    """A typical quick-start app: sample key, no extensions, no headers."""
    app = Flask("tests.check.apps")
    app.config.update(SECRET_KEY="dev", SESSION_COOKIE_SAMESITE=None)
    app.jinja_env.autoescape = False

    @app.route("/", methods=["GET", "POST"])
    def index() -> str:
        return "hello"

    app.cli.add_command(security)
    return app
