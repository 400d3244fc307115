"""Configuration: secure defaults, read from ``BASTION_*`` variables, checked at start-up.

Every setting comes from the environment (``BASTION_SECRET_KEY`` ...) through Flask's
``from_prefixed_env``; a secret may instead be read from a file (``BASTION_SECRET_KEY_FILE``)
so container secrets never sit in the environment. ``BASTION_ENV`` picks one of three
environments and defaults to *production*: forgetting to configure the server yields a
refusal to start, never a debug server with a sample key.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import os
import re
import secrets
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
from click.core import ParameterSource
from flask import Flask
from flask.cli import NoAppException
from flask.helpers import get_debug_flag

ENVIRONMENTS = ("development", "testing", "production")
PREFIX = "BASTION"
# Settings that may be given as ``BASTION_<NAME>_FILE`` pointing to a file holding the value.
FILE_SETTINGS = (
    "SECRET_KEY",
    "SECRET_KEY_FALLBACKS",  # one key or a JSON list, as in the environment
    "DATABASE_URL",
    "REDIS_URL",
    "MAIL_URL",
    "SENTRY_DSN",
    "METRICS_TOKEN",
    "JWT_KEYS",
)
# Other ``BASTION_*_FILE`` variables that are not application settings: the container
# health check's CA (deploy/healthcheck.py).
OTHER_FILE_SETTINGS = frozenset({"INTERNAL_CA_FILE"})
# Flask-Limiter strings (``limits`` syntax), checked at start-up.
RATE_LIMIT_SETTINGS = (
    "RATELIMIT_DEFAULT",
    "UPLOAD_RATE_LIMIT",
    "ARTICLE_WRITE_RATE_LIMIT",
    "COMMENT_WRITE_RATE_LIMIT",
    "API_RATE_LIMIT",
    "API_TOKEN_RATE_LIMIT",
)
MIN_SECRET_BYTES = 32
MIN_METRICS_TOKEN_CHARS = 24
# Whole-number settings: (smallest, largest) allowed, None for no bound. Lifetimes are at
# least 1 (0 would switch the throttle's memory off) and at most about ten years in their
# unit, so every date computed from them exists: an extra zero must stop start-up, not make
# every sign-in fail with a 500.
_MINUTES_10Y, _HOURS_10Y, _DAYS_10Y, _SECONDS_10Y = 5_256_000, 87_600, 3_650, 315_360_000
WHOLE_NUMBER_SETTINGS: dict[str, tuple[int | None, int | None]] = {
    "PROXY_HOPS": (0, None),
    # Request limits: text such as "10MB" or a negative number answered every form post or
    # API call with a 500 (or a 413 for any body) instead of stopping start-up.
    "MAX_CONTENT_LENGTH": (1, None),
    "MAX_FORM_MEMORY_SIZE": (1, None),
    "MAX_FORM_PARTS": (1, None),
    "API_MAX_BODY_BYTES": (1, None),
    "MAX_UPLOAD_MB": (1, None),
    "UPLOAD_QUOTA_FILES": (0, None),
    "UPLOAD_QUOTA_MB": (0, None),
    "SETUP_TOKEN_MINUTES": (1, _MINUTES_10Y),
    "LOGIN_THROTTLE_ACCOUNT_FREE": (0, None),
    "LOGIN_THROTTLE_IP_FREE": (0, None),
    "LOGIN_THROTTLE_FORGET_SECONDS": (1, _SECONDS_10Y),
    "SESSION_IDLE_MINUTES": (1, _MINUTES_10Y),
    "SESSION_ABSOLUTE_HOURS": (1, _HOURS_10Y),
    "REMEMBER_DAYS": (1, _DAYS_10Y),
    "REAUTH_MINUTES": (1, _MINUTES_10Y),
    "CONFIRM_HOURS": (1, _HOURS_10Y),
    "RESET_MINUTES": (1, _MINUTES_10Y),
    "EMAIL_CHANGE_HOURS": (1, _HOURS_10Y),
    "TWO_FACTOR_PENDING_SECONDS": (1, _SECONDS_10Y),
    "JWT_ACCESS_MINUTES": (1, _MINUTES_10Y),
    "JWT_REFRESH_DAYS": (1, _DAYS_10Y),
    # validate() explains a default below 1 or above the maximum in its own words.
    "PAT_DEFAULT_DAYS": (None, _DAYS_10Y),
    "PAT_MAX_DAYS": (None, _DAYS_10Y),
}


class ConfigError(click.ClickException, RuntimeError):
    """Raised with every problem at once, so an operator fixes them in one go.

    A click exception too: ``flask --app bastion <command>`` then prints the list as its
    one error and exits 1, instead of a traceback of Flask's app loading around it. Under
    gunicorn it is an ordinary exception, logged with its traceback.
    """

    def __init__(self, problems: list[str], note: str = "") -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        tail = f"\n{note}" if note else ""
        super().__init__(f"Bastion refuses to start; fix these settings:\n{lines}{tail}")


class ListingConfigError(ConfigError, NoAppException):
    """The refusal while ``flask --help`` lists the app's commands.

    Flask prints a :class:`NoAppException` there as one error above its own commands, and
    anything else as a traceback. Only the listing gets it: a command keeps
    :class:`ConfigError`, since Flask reports a NoAppException there as "No such command".
    """

    exit_code = 1


# A command run from a shell without .env gets production's list of problems, which does not
# say why a developer who only wanted to try the site meets them.
UNNAMED_ENV_NOTE = (
    "BASTION_ENV is not set, so these are production's rules. On a development machine, "
    "`cp .env.example .env` in the project directory first (it sets BASTION_ENV=development)."
)


def refusal(problems: list[str], note: str = "") -> ConfigError:
    """The exception that refuses start-up with ``problems``, in the form its reader sees
    without a traceback."""
    kind = ListingConfigError if _listing_commands() else ConfigError
    return kind(problems, note)


def _listing_commands() -> bool:
    """Whether the app loads for ``flask --help``: to list its commands, running none."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:  # gunicorn, tests, a script
        return False
    root = ctx.find_root()
    option = root.command.get_help_option(root)
    return option is not None and option.name is not None and (
        root.get_parameter_source(option.name) is ParameterSource.COMMANDLINE
    )


def _read_dotenv_for_listing() -> None:
    """Read ``.env`` (and ``.flaskenv``), and the file ``-e``/``--env-file`` names, before
    ``flask --app bastion --help`` lists the commands, as Flask reads them before running
    any command.

    Flask handles its ``--env-file`` option, which reads them, only after an ``--help``
    that came first; the app loaded for the listing then met production's rules, told a
    developer who had copied ``.env.example`` to copy it, and listed none of Bastion's
    commands. Like Flask, the named file wins over ``.env``, it sets only variables not
    already set, and it honours ``FLASK_SKIP_DOTENV`` (which skips only the default files).
    """
    from flask.cli import load_dotenv
    from flask.helpers import get_load_dotenv

    ctx = click.get_current_context(silent=True)
    root = ctx.find_root() if ctx is not None else None
    defaults = bool(getattr(root and root.obj, "load_dotenv_defaults", get_load_dotenv()))
    env_file = _env_file_named(root) if root is not None else None
    if env_file is not None or defaults:
        load_dotenv(env_file, load_defaults=defaults)


def _env_file_named(root: click.Context) -> str | None:
    """The file ``flask``'s ``-e``/``--env-file`` (or ``FLASK_ENV_FILE``) names, read from
    its command line as click would parse it: its own option is processed too late."""
    option = next((p for p in root.command.params if p.name == "env_file"), None)
    if option is None:  # not Flask's ``flask`` command (a test's runner of app.cli)
        return None
    parser = root.command.make_parser(root)
    parser.ignore_unknown_options = True
    try:
        opts, _, _ = parser.parse_args(args=sys.argv[1:])  # what click's main() parses
    except click.UsageError:  # Flask reports it when it processes the option
        opts = {}
    value = opts.get("env_file") or option.resolve_envvar_value(root)
    return str(value) if value else None


class BaseConfig:
    """Secure defaults shared by every environment."""

    ENV_NAME = "production"
    DEBUG = False
    TESTING = False
    PROPAGATE_EXCEPTIONS = False

    # Database and shared state
    DATABASE_URL: str | None = None
    REDIS_URL: str | None = None
    # Production start-up reads Redis' maxmemory-policy with INFO (bastion/redis_eviction.py).
    # Off only where the Redis user may not run INFO and the server is known not to evict
    # (deploy/compose.yaml): each refused INFO would be an entry in Redis' ACL LOG.
    REDIS_POLICY_CHECK = True
    # Hosts of PostgreSQL/Redis that production may reach without TLS because the network
    # to them is private (comma-separated); see bastion/security/transport.py.
    PLAINTEXT_DATA_HOSTS: frozenset[str] = frozenset()
    SQLALCHEMY_ECHO = False
    SQLALCHEMY_RECORD_QUERIES = False

    # Edge
    TRUSTED_HOSTS: list[str] | None = None
    # The site's origin as its users reach it (https://host[:port]). When set, every
    # absolute link (mailed confirmation, reset and email-change links) is built on it
    # instead of the request's Host, which may be an internal name the allow-list admits.
    PUBLIC_URL: str | None = None
    PROXY_HOPS = 0
    PREFERRED_URL_SCHEME = "https"
    FORCE_HTTPS = True

    # Request limits: non-file form fields and JSON bodies stay small; uploads raise the
    # body limit only on their own routes.
    MAX_CONTENT_LENGTH = 1024 * 1024
    MAX_FORM_MEMORY_SIZE = 256 * 1024
    MAX_FORM_PARTS = 100
    MAX_UPLOAD_MB = 5
    UPLOAD_DIR: str | None = None
    # Per-user upload quota and rate (every image counts, avatars included).
    UPLOAD_QUOTA_FILES = 200
    UPLOAD_QUOTA_MB = 100
    UPLOAD_RATE_LIMIT = "20 per minute; 200 per day"

    # Cookies: host-only, TLS-only, invisible to scripts, not sent on cross-site subrequests.
    SESSION_COOKIE_NAME = "__Host-session"
    SESSION_COOKIE_SECURE = True
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_PATH = "/"
    SESSION_COOKIE_DOMAIN = False
    SESSION_REFRESH_EACH_REQUEST = False
    SESSION_IDLE_MINUTES = 30
    SESSION_ABSOLUTE_HOURS = 12
    REMEMBER_DAYS = 30
    REAUTH_MINUTES = 10
    # Sign-in throttling: after FREE failures the wait doubles from BASE up to MAX seconds,
    # per account and (more generously, for shared addresses) per client IP. A growing
    # delay, never a lockout: the owner gets in once the wait is over.
    LOGIN_THROTTLE_ACCOUNT_FREE = 5
    LOGIN_THROTTLE_IP_FREE = 20
    LOGIN_THROTTLE_BASE_SECONDS = 2.0
    LOGIN_THROTTLE_MAX_SECONDS = 300.0
    LOGIN_THROTTLE_FORGET_SECONDS = 3600
    # Lifetimes of emailed links and of the pause between the password and 2FA steps.
    CONFIRM_HOURS = 48
    RESET_MINUTES = 60
    EMAIL_CHANGE_HOURS = 24
    TWO_FACTOR_PENDING_SECONDS = 300
    # Flask-Login's own remember cookie is never set (sessions are server-side records);
    # these keep it safe should anything ever ask for it.
    REMEMBER_COOKIE_NAME = "__Host-remember"
    REMEMBER_COOKIE_SECURE = True
    REMEMBER_COOKIE_HTTPONLY = True
    REMEMBER_COOKIE_SAMESITE = "Lax"
    REMEMBER_COOKIE_DURATION = timedelta(days=30)

    # CSRF (Flask-WTF): tokens bound to the session, valid for the session's lifetime.
    WTF_CSRF_ENABLED = True
    WTF_CSRF_TIME_LIMIT = None
    WTF_CSRF_SSL_STRICT = True

    # Rate limits (Flask-Limiter)
    RATELIMIT_ENABLED = True
    RATELIMIT_DEFAULT = "300 per minute"
    # Per account, pages and API together, on top of the per-client limits: rendering a
    # hostile 100,000-character article costs up to about 2.5 s of CPU, and the default
    # limit alone let one account keep a worker busy with saves. Nobody saving by hand
    # comes near these (a save every 6 s, or every 30 s for a whole hour); a script that
    # uploads many articles paces itself on the 429's Retry-After.
    ARTICLE_WRITE_RATE_LIMIT = "10 per minute; 120 per hour"
    COMMENT_WRITE_RATE_LIMIT = "20 per minute; 200 per hour"
    # Off: bastion.security.ratelimit_headers adds them to 429 and API answers only, which
    # saves a Redis round trip on every page.
    RATELIMIT_HEADERS_ENABLED = False
    RATELIMIT_STRATEGY = "moving-window"
    RATELIMIT_KEY_PREFIX = "bastion"
    RATELIMIT_SWALLOW_ERRORS = True
    # Redis down: reads keep per-process limits, credential endpoints answer 503
    # (bastion/observability/outages.py explains the policy).
    RATELIMIT_IN_MEMORY_FALLBACK_ENABLED = True
    RATELIMIT_FAIL_CLOSED_PATHS = (
        "/auth/login",
        "/auth/2fa",
        "/auth/reauth",
        "/auth/register",
        "/auth/reset",
        "/setup/",
        "/api/v1/auth/token",
        "/api/v1/auth/refresh",
    )

    # Mail, uploads, observability
    MAIL_URL: str | None = None
    MAIL_SENDER = "Bastion <no-reply@localhost>"
    # Without MAIL_URL, messages are written here (and to the log) instead of being sent:
    # development and tests only, production refuses to start without MAIL_URL.
    OUTBOX_DIR: str | None = None
    # Deliver after the response is decided, so replies take the same time with or without mail.
    MAIL_BACKGROUND = True
    SENTRY_DSN: str | None = None
    SENTRY_TRACES_SAMPLE_RATE = 0.0
    RELEASE: str | None = None
    METRICS_TOKEN: str | None = None
    REQUIRE_2FA_ROLES = "admin"
    SECURITY_CONTACT = "mailto:security@example.org"
    LOG_LEVEL = "INFO"
    SETUP_TOKEN_MINUTES = 60
    # `flask security check`: the permanent-cookie lifetime is 30 days only so that an
    # opted-in "remember me" survives a browser restart; every session's real lifetime is
    # enforced server-side (12 h absolute, 30 min idle, unless remembered).
    # HSTS preload is left to the operator: the token invites anyone to submit the domain
    # (and all its subdomains) to the browsers' preload list. Set BASTION_HSTS_PRELOAD=true
    # once that is intended.
    DEPLOY_CHECK_SILENCED = ["BST-W106", "BST-I203"]
    HSTS_PRELOAD = False

    # API (JWT and personal access tokens). The signing keys are separate from SECRET_KEY:
    # a JSON keyset ``[{"kid": ..., "pem": ...}, ...]``; the first signs, all verify.
    JWT_KEYS: str | None = None
    JWT_ISSUER = "bastion"
    JWT_AUDIENCE = "bastion-api"
    JWT_ACCESS_MINUTES = 15
    JWT_REFRESH_DAYS = 14
    PAT_DEFAULT_DAYS = 30
    PAT_MAX_DAYS = 365
    # Room for the largest valid article (100,000 characters, even as 4-byte UTF-8 or
    # \u-escaped BMP text); anything bigger is refused before it is parsed.
    API_MAX_BODY_BYTES = 1024 * 1024
    API_RATE_LIMIT = "120 per minute"
    API_TOKEN_RATE_LIMIT = "10 per minute"  # noqa: S105  # nosec B105 - a rate limit, not a secret
    # Origins allowed to call the API from a browser (comma separated); none by default.
    CORS_ORIGINS = ""
    REDIS_PREFIX = "bastion"

    # Performance: seconds a worker reuses an anonymous public page it rendered (0 = off).
    PUBLIC_PAGE_CACHE_SECONDS = 5


class DevelopmentConfig(BaseConfig):
    """Local use: SQLite and in-memory limits in ``instance/``; still no debugger by default."""

    ENV_NAME = "development"
    FORCE_HTTPS = False
    TRUSTED_HOSTS = ["127.0.0.1", "localhost"]
    # Browsers treat http://127.0.0.1 and http://localhost as secure contexts, so the
    # __Host- cookie with Secure works on the development server as it does behind TLS.


class TestingConfig(BaseConfig):
    """Tests: fast hashing is NOT used; only the parts that need outside services change."""

    ENV_NAME = "testing"
    TESTING = True
    FORCE_HTTPS = False
    TRUSTED_HOSTS = ["localhost", "127.0.0.1"]
    SECRET_KEY = "testing-" + "x" * 56
    MAIL_BACKGROUND = False  # tests read the mailbox right after the request
    RATELIMIT_ENABLED = True
    # Tests expect what they just wrote to show at once.
    PUBLIC_PAGE_CACHE_SECONDS = 0


class ProductionConfig(BaseConfig):
    """Behind TLS with PostgreSQL and Redis; every unsafe choice refuses start-up."""

    ENV_NAME = "production"


CONFIGS: dict[str, type[BaseConfig]] = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}


def load_config(app: Flask, overrides: dict[str, Any] | None = None) -> None:
    """Fill ``app.config`` from defaults, environment, secret files and ``overrides``."""
    overrides = dict(overrides or {})
    if _listing_commands():
        _read_dotenv_for_listing()
    env_named = bool(overrides.get("ENV_NAME") or os.environ.get(f"{PREFIX}_ENV"))
    env_name = str(overrides.get("ENV_NAME") or os.environ.get(f"{PREFIX}_ENV") or "production")
    if env_name not in ENVIRONMENTS:
        raise refusal([f"BASTION_ENV must be one of {', '.join(ENVIRONMENTS)}, not {env_name!r}"])
    app.config.from_object(CONFIGS[env_name])
    unread: dict[str, str] = {}
    if env_name != "testing" or overrides.pop("READ_ENV", False):
        app.config.from_prefixed_env(PREFIX)
        unread = _read_secret_files(app)
    app.config.pop("ENV", None)
    app.config.update(overrides)
    app.config["ENV_NAME"] = env_name
    unparsable = _normalise(app)
    if env_name == "development" and not app.config.get("SECRET_KEY") and not unread:
        app.config["SECRET_KEY"] = _instance_secret(app)
    _csrf_keys(app.config)
    if env_name != "production" and not app.config.get("JWT_KEYS") and not unread:
        from bastion.api.keys import instance_keyset

        app.config["JWT_KEYS"] = instance_keyset(Path(app.instance_path))
    # An unreadable file is listed with every other problem; what the checks say about its
    # setting ("missing", "SQLite" for a database URL that never arrived) would mislead.
    unknown = tuple(f"{name} " for name in unread)
    problems = list(unread.values()) + [
        p for p in unparsable + validate(app.config) if not p.startswith(unknown)
    ]
    if problems:
        raise refusal(problems, "" if env_named else UNNAMED_ENV_NOTE)


def _read_secret_files(app: Flask) -> dict[str, str]:
    """Replace each ``<NAME>_FILE`` by the text of its file; return, by ``BASTION_<NAME>``,
    why a file could not be used, so that every problem is reported in one go.

    A ``BASTION_*_FILE`` naming no setting that is read from a file is a problem too: a
    misspelt ``BASTION_SENTRY_DNS_FILE`` would otherwise switch error reporting off without
    a word.
    """
    unread: dict[str, str] = {}
    for name in FILE_SETTINGS:
        path = app.config.pop(f"{name}_FILE", None)
        if not path:
            continue
        try:
            app.config[name] = Path(str(path)).read_text(encoding="utf-8").strip()
        except OSError as exc:
            unread[f"BASTION_{name}"] = f"BASTION_{name}_FILE cannot be read: {exc.strerror}"
        except UnicodeDecodeError:
            # Raw random bytes (`head -c 32 /dev/urandom`) are the usual cause.
            unread[f"BASTION_{name}"] = (
                f"BASTION_{name}_FILE is not UTF-8 text; write the value as text (e.g. "
                "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`)"
            )
    for key in sorted(k for k in app.config if k.endswith("_FILE") and k not in OTHER_FILE_SETTINGS):
        unread[f"BASTION_{key}"] = (
            f"BASTION_{key} is not read by Bastion; the settings that may come from a file "
            f"are {', '.join(f'BASTION_{n}_FILE' for n in FILE_SETTINGS)}"
        )
    return unread


def _whole_number(value: object, low: int | None, high: int | None) -> int | None:
    """``value`` as an int within [low, high], or None: no rounding, no booleans."""
    if isinstance(value, str):
        value = value.strip()
    if isinstance(value, bool) or not isinstance(value, int | str | float):
        return None
    try:
        number = int(value)
    except (ValueError, OverflowError):
        return None
    if isinstance(value, float) and number != value:
        return None
    if (low is not None and number < low) or (high is not None and number > high):
        return None
    return number


def _finite_number(value: object, low: float, high: float) -> float | None:
    """``value`` as a float within [low, high], or None (NaN and infinity never are)."""
    if isinstance(value, bool) or not isinstance(value, int | str | float):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) and low <= number <= high else None


def _parse_numbers(cfg: Any) -> list[str]:
    """Parse numeric settings in place; a typo is a named problem, never a traceback or a
    guess (``int(1.9)`` is 1, ``int(True)`` is 1)."""
    problems: list[str] = []
    for key, (low, high) in WHOLE_NUMBER_SETTINGS.items():
        number = _whole_number(cfg[key], low, high)
        if number is None:
            span = f"{'-inf' if low is None else low}..{'inf' if high is None else high}"
            problems.append(f"BASTION_{key} must be a whole number in {span}, not {cfg[key]!r}")
            number = getattr(BaseConfig, key)
        cfg[key] = number
    # A zero or NaN delay is no throttle at all: sign-in guessing would run unslowed.
    # Public pages: a withdrawn or moderated article stays on the other workers for as long
    # as they reuse their copy, so that is bounded to a minute (reuse gains little beyond).
    floats = {
        "LOGIN_THROTTLE_BASE_SECONDS": (0.001, float(_SECONDS_10Y)),
        "LOGIN_THROTTLE_MAX_SECONDS": (0.001, float(_SECONDS_10Y)),
        "PUBLIC_PAGE_CACHE_SECONDS": (0.0, 60.0),
    }
    for key, (lowest, highest) in floats.items():
        parsed = _finite_number(cfg[key], lowest, highest)
        if parsed is None:
            problems.append(
                f"BASTION_{key} must be a number of seconds in {lowest:g}..{highest:.0f}, "
                f"not {cfg[key]!r}"
            )
            parsed = float(getattr(BaseConfig, key))
        cfg[key] = parsed
    rate = _finite_number(cfg["SENTRY_TRACES_SAMPLE_RATE"], 0.0, 1.0)
    if rate is None:  # was a traceback at start-up, or Sentry's own refusal, with a DSN set
        problems.append(
            "BASTION_SENTRY_TRACES_SAMPLE_RATE must be a fraction in 0..1, "
            f"not {cfg['SENTRY_TRACES_SAMPLE_RATE']!r}"
        )
        rate = BaseConfig.SENTRY_TRACES_SAMPLE_RATE
    cfg["SENTRY_TRACES_SAMPLE_RATE"] = rate
    return problems


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _log_level(cfg: Any) -> list[str]:
    """``LOG_LEVEL`` as the upper-case name ``logging`` knows, in any case.

    ``logging`` takes upper-case names only: ``BASTION_LOG_LEVEL=info`` (the spelling of
    ``GUNICORN_LOG_LEVEL``) stopped every worker and command with a ValueError traceback
    that named no setting.
    """
    given = cfg.get("LOG_LEVEL")
    if isinstance(given, int) and not isinstance(given, bool):  # 10, as logging also takes
        given = logging.getLevelName(given)
    level = str(given or "").strip().upper()
    if level in LOG_LEVELS:
        cfg["LOG_LEVEL"] = level
        return []
    problem = (f"BASTION_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, "
               f"not {cfg.get('LOG_LEVEL')!r}")
    cfg["LOG_LEVEL"] = BaseConfig.LOG_LEVEL
    return [problem]


TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})


def _switch_names(app: Flask) -> set[str]:
    """Settings that are on/off switches: those whose default (ours or Flask's) is a bool."""
    config_class = CONFIGS[app.config["ENV_NAME"]]
    names = {key for key, value in app.default_config.items() if isinstance(value, bool)}
    for klass in config_class.__mro__:
        names.update(
            key for key, value in vars(klass).items() if key.isupper() and isinstance(value, bool)
        )
    return names


def _parse_switches(app: Flask) -> list[str]:
    """On/off settings as real booleans; anything else is a named problem.

    Flask's ``from_prefixed_env`` reads ``true``/``false`` as booleans but ``0``/``1`` as
    numbers and ``yes``/``off`` as strings: ``BASTION_RATELIMIT_ENABLED=off`` was the
    truthy string "off", and ``BASTION_SESSION_COOKIE_SECURE=0`` made the cookie attribute
    ``Secure=0``. A word that is neither (``flase``) stops start-up instead of counting as on.
    """
    cfg = app.config
    problems = []
    for key in sorted(_switch_names(app)):
        value = cfg.get(key)
        if value is None or isinstance(value, bool):
            continue
        word = str(value).strip().lower() if isinstance(value, (str, int)) else None
        if word in TRUE_WORDS:
            cfg[key] = True
        elif word in FALSE_WORDS:
            cfg[key] = False
        else:
            problems.append(f"BASTION_{key} must be true or false, not {value!r}")
    return problems


def _rate_limits(cfg: Any) -> list[str]:
    """Rate-limit settings must parse: Flask-Limiter logs a limit it cannot read and then
    applies none, so a typo would switch the limit off instead of stopping start-up."""
    from limits import parse_many

    problems = []
    for key in RATE_LIMIT_SETTINGS:
        value = cfg[key]
        try:
            ok = isinstance(value, str) and all(item.amount > 0 for item in parse_many(value))
        except ValueError:
            ok = False
        if not ok:
            problems.append(
                f"BASTION_{key} must be a rate limit such as '10 per minute; 100 per hour', "
                f"not {value!r}"
            )
    return problems


def _default_sender(cfg: Any) -> None:
    """Left at its default, the sender is ``no-reply@`` the public URL's host: mail from
    ``no-reply@localhost`` (the default without a public URL) is refused or filed as spam by
    receivers that check the sender's domain, and reset links never arrive."""
    if cfg.get("MAIL_SENDER") != BaseConfig.MAIL_SENDER or not cfg.get("PUBLIC_URL"):
        return
    host = urlsplit(str(cfg["PUBLIC_URL"])).hostname
    if host and "." in host:
        cfg["MAIL_SENDER"] = f"Bastion <no-reply@{host}>"


def _fallback_keys(cfg: Any) -> list[str]:
    """SECRET_KEY_FALLBACKS as a list: Flask iterates it, so a plain string from the
    environment would make every single character a key that signs valid cookies.

    A JSON list from ``BASTION_SECRET_KEY_FALLBACKS_FILE`` arrives as text (the environment
    variable is decoded by ``from_prefixed_env``); no generated key starts with "[", so
    text that does and is no JSON list is refused rather than taken for one odd key.
    """
    fallbacks = cfg.get("SECRET_KEY_FALLBACKS")
    if isinstance(fallbacks, str) and fallbacks.startswith("["):
        try:
            fallbacks = json.loads(fallbacks)
        except ValueError:
            fallbacks = [None]  # refused below
    if not fallbacks:
        cfg["SECRET_KEY_FALLBACKS"] = []
        return []
    if isinstance(fallbacks, str | bytes):
        fallbacks = [fallbacks]
    if not isinstance(fallbacks, list | tuple) or not all(
        isinstance(k, str | bytes) and k for k in fallbacks
    ):
        cfg["SECRET_KEY_FALLBACKS"] = []
        return ["BASTION_SECRET_KEY_FALLBACKS must be one key or a JSON list of keys"]
    cfg["SECRET_KEY_FALLBACKS"] = list(fallbacks)
    return []


_ORIGIN = re.compile(r"https://[a-z0-9.-]+(:[0-9]{1,5})?|http://(localhost|127\.0\.0\.1)(:[0-9]{1,5})?")


def _origin_problem(origin: str) -> str:
    """Why a CORS origin may not be listed ("" when it may): exactly a browser's
    serialisation of an HTTPS origin (plain HTTP only on this machine). "null" is sent by
    any sandboxed iframe and "*" by nobody; a path or capitals would never match."""
    port = origin.rpartition(":")[2] if origin.count(":") == 2 else "0"
    if _ORIGIN.fullmatch(origin) and int(port) <= 65535:
        return ""
    return (
        f"BASTION_CORS_ORIGINS entry {origin!r} is not an origin like https://app.example.org "
        "(lower case, no path; never null or *)"
    )


def _csrf_keys(cfg: Any) -> None:
    """Form tokens signed with SECRET_KEY and checked under its fallbacks too.

    Flask-WTF signs and checks its CSRF tokens with one key (``WTF_CSRF_SECRET_KEY``, else
    ``SECRET_KEY``), so every form open in a browser during a key rotation was refused once.
    Its signer (itsdangerous) takes a list: it signs with the last key and checks under
    each. Left alone when ``WTF_CSRF_SECRET_KEY`` is set on its own.
    """
    fallbacks = cfg.get("SECRET_KEY_FALLBACKS")
    if fallbacks and cfg.get("SECRET_KEY") and cfg.get("WTF_CSRF_SECRET_KEY") is None:
        cfg["WTF_CSRF_SECRET_KEY"] = [*fallbacks, cfg["SECRET_KEY"]]


def _normalise(app: Flask) -> list[str]:
    """Turn the plain strings that environment variables give into the types Flask expects;
    return the settings that could not be understood."""
    cfg = app.config
    problems = (_parse_switches(app) + _parse_numbers(cfg) + _log_level(cfg) + _rate_limits(cfg)
                + _fallback_keys(cfg))
    plain = cfg.get("PLAINTEXT_DATA_HOSTS") or ()
    if isinstance(plain, str):
        plain = [h.strip() for h in plain.split(",")]
    cfg["PLAINTEXT_DATA_HOSTS"] = frozenset(h for h in plain if h)
    if cfg.get("PUBLIC_URL"):
        cfg["PUBLIC_URL"] = str(cfg["PUBLIC_URL"]).strip().rstrip("/") or None
    _default_sender(cfg)
    hosts = cfg.get("TRUSTED_HOSTS")
    if isinstance(hosts, str):
        hosts = hosts.split(",")
    if isinstance(hosts, list | tuple):
        # Lower case: Werkzeug compares host names case-sensitively and browsers send them
        # in lower case, so "Example.org" here would have refused every visitor.
        cfg["TRUSTED_HOSTS"] = [h.strip().lower() for h in hosts if h.strip()] or None
    keys = cfg.get("JWT_KEYS")
    if isinstance(keys, (list, dict)):
        # from_prefixed_env decodes JSON values; the keyset reader takes the JSON text.
        cfg["JWT_KEYS"] = json.dumps(keys)
    instance = Path(app.instance_path)
    if not cfg.get("DATABASE_URL"):
        cfg["DATABASE_URL"] = f"sqlite:///{instance / 'bastion.db'}"
    url = str(cfg["DATABASE_URL"])
    if url.startswith("postgres://") or url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    cfg["SQLALCHEMY_DATABASE_URI"] = url
    if msg := database_url_problem(url):
        problems.append(msg)
    else:
        cfg.setdefault("SQLALCHEMY_ENGINE_OPTIONS", _engine_options(url))
    from bastion.security.ratelimit_storage import limiter_uri

    # The same Redis through a subclass of limits' storage that can carry a read along.
    redis_url = cfg.get("REDIS_URL")
    cfg["RATELIMIT_STORAGE_URI"] = limiter_uri(str(redis_url)) if redis_url else "memory://"
    if cfg.get("REDIS_URL"):
        # A Redis that stops answering costs a request one second, never a hang.
        cfg.setdefault(
            "RATELIMIT_STORAGE_OPTIONS", {"socket_connect_timeout": 1, "socket_timeout": 1}
        )
    cfg["UPLOAD_DIR"] = str(cfg.get("UPLOAD_DIR") or instance / "uploads")
    cfg["OUTBOX_DIR"] = str(cfg.get("OUTBOX_DIR") or instance / "outbox")
    cfg["MAX_UPLOAD_BYTES"] = cfg["MAX_UPLOAD_MB"] * 1024 * 1024
    cfg["UPLOAD_QUOTA_BYTES"] = cfg["UPLOAD_QUOTA_MB"] * 1024 * 1024
    roles = cfg.get("REQUIRE_2FA_ROLES") or ""
    if isinstance(roles, str):
        cfg["REQUIRE_2FA_ROLES"] = frozenset(r.strip() for r in roles.split(",") if r.strip())
    from bastion.models.user import ROLE_NAMES

    # A misspelt role ("Admin", "admins") would silently make 2FA optional for that role.
    if unknown := sorted(set(cfg["REQUIRE_2FA_ROLES"]) - set(ROLE_NAMES)):
        problems.append(
            f"BASTION_REQUIRE_2FA_ROLES names no role: {', '.join(map(repr, unknown))} "
            f"(the roles are {', '.join(ROLE_NAMES)}, comma-separated)"
        )
    cfg["SESSION_IDLE"] = timedelta(minutes=cfg["SESSION_IDLE_MINUTES"])
    origins = cfg.get("CORS_ORIGINS") or ()
    if isinstance(origins, str):
        origins = [o.strip().rstrip("/") for o in origins.split(",") if o.strip()]
    cfg["CORS_ORIGINS"] = frozenset(origins)
    problems += [p for o in sorted(cfg["CORS_ORIGINS"]) if (p := _origin_problem(o))]
    cfg["SESSION_ABSOLUTE"] = timedelta(hours=cfg["SESSION_ABSOLUTE_HOURS"])
    # A "keep me signed in" cookie lives as long as its server record may, not a fixed 30 days.
    cfg["PERMANENT_SESSION_LIFETIME"] = timedelta(days=cfg["REMEMBER_DAYS"])
    return problems


# The drivers installed with Bastion (requirements/main.in): psycopg 3 and Python's sqlite3.
DATABASE_DRIVERS = frozenset({"postgresql+psycopg", "sqlite", "sqlite+pysqlite"})


def database_url_problem(url: str) -> str | None:
    """Why the database URL cannot be used, or None. SQLAlchemy would otherwise stop
    start-up with a traceback that names no setting ("invalid literal for int()" for a port
    that is no number, "No module named 'MySQLdb'"); its messages never quote the URL, which
    holds the password."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return (
            "BASTION_DATABASE_URL cannot be parsed: use postgresql://user:password@host:port/name "
            "(percent-encode '@', ':', '/', '?' and '#' in the password)"
        )
    if parsed.drivername not in DATABASE_DRIVERS:
        return (
            f"BASTION_DATABASE_URL must be a postgresql:// URL (or sqlite:/// outside "
            f"production), not {parsed.drivername.partition('+')[0]}://"
        )
    return None


def _engine_options(url: str) -> dict[str, Any]:
    """Bounded waits: a database that does not answer yields an error, never a hang.

    ``hide_parameters``: a failed statement's message (logged, sent to Sentry) keeps the SQL
    but not its values, which may be an email address, a password hash or a token digest.
    """
    if url.startswith("postgresql"):
        from sqlalchemy.engine import make_url

        # Keep any libpq options given in the URL (e.g. a search_path) and add a timeout.
        given = make_url(url).query.get("options", "")
        options = " ".join(filter(None, [str(given), "-c statement_timeout=15000"]))
        return {
            # No ping before every checkout: it is one more round trip on every request.
            # A connection that died with the server fails its first statement instead;
            # SQLAlchemy then discards the whole pool, that request gets the outage 503 and
            # the next ones reconnect (tests/ops/test_outages.py shows the recovery).
            "pool_pre_ping": False,
            "pool_size": 5,
            "max_overflow": 5,
            "pool_timeout": 5,
            "pool_recycle": 1800,
            "connect_args": {"connect_timeout": 3, "options": options},
            "hide_parameters": True,
        }
    return {"connect_args": {"timeout": 10}, "hide_parameters": True}


def _instance_secret(app: Flask) -> str:
    """Development only: one random key per checkout, kept private in ``instance/``."""
    path = Path(app.instance_path) / "secret_key"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48))
    return path.read_text(encoding="utf-8").strip()


def secret_strength_problem(secret: object, name: str = "BASTION_SECRET_KEY") -> str | None:
    """Why a secret key is unusable, or None. Shared with the production check."""
    from flask_deploy_check.config_checks import is_sample_secret

    if not secret or not isinstance(secret, str | bytes):
        return f"{name} is missing"
    raw = secret.encode() if isinstance(secret, str) else secret
    if len(raw) < MIN_SECRET_BYTES:
        return f"{name} is too short ({len(raw)} bytes; use at least {MIN_SECRET_BYTES})"
    counts = Counter(raw)
    entropy = -sum(c / len(raw) * math.log2(c / len(raw)) for c in counts.values())
    if entropy < 3.5:
        return f"{name} is not random enough (generate one with `python -c 'import secrets; print(secrets.token_urlsafe(48))'`)"
    # Long, varied and still public: keys from tutorials and docs are in every wordlist.
    if is_sample_secret(secret):
        return f"{name} is a published sample value; anyone can sign cookies with it"
    return None


# RFC 9116 2.5.3: a Contact is a URI; mailto:, https:// (never http) or tel:.
SECURITY_CONTACT_RE = re.compile(r"(?:mailto:|https://|tel:)[!-~]+")


def security_contact_problem(contact: str) -> str | None:
    """Why ``BASTION_SECURITY_CONTACT`` cannot be the Contact line of security.txt, or None.

    A bare address makes the file invalid for the tools researchers use, and a line break
    (from a secret file, say) would add fields of its own (a second Canonical, an Expires).
    """
    if SECURITY_CONTACT_RE.fullmatch(contact):
        return None
    return ("BASTION_SECURITY_CONTACT must be one mailto:, https:// or tel: URI without "
            "spaces (RFC 9116), e.g. mailto:security@example.org")


# Names reserved for examples and tests (RFC 2606, RFC 6761): nobody reads mail there.
# (localhost is left alone: the compose file's trial on one machine names it.)
_PLACEHOLDER_DOMAINS = ("example.org", "example.com", "example.net", "example", "invalid",
                        "test")


def placeholder_contact_problem(contact: str) -> str | None:
    """Why the contact is a placeholder that reaches no one, or None (production only).

    The default, like the deployments' templates, names a reserved domain: served as it is,
    security.txt sends every researcher's report nowhere.
    """
    if contact.startswith("tel:"):
        return None
    target = contact.partition(":")[2]
    host = (target.rpartition("@")[2] if contact.startswith("mailto:")
            else urlsplit(contact).hostname or "").split("?")[0].rstrip(".").lower()
    if any(host == d or host.endswith("." + d) for d in _PLACEHOLDER_DOMAINS):
        return (f"BASTION_SECURITY_CONTACT ({contact}) is a placeholder that reaches no one: "
                "set the address or page where security reports should go (security.txt)")
    return None


_DNS_NAME = re.compile(r"[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?")


def _is_ipv6(host: str) -> bool:
    """An IPv6 address (``urlsplit`` gives it without its brackets)."""
    try:
        return ipaddress.ip_address(host).version == 6
    except ValueError:
        return False


def public_url_problem(url: str) -> str | None:
    """Why ``BASTION_PUBLIC_URL`` is not an origin links can be built on, or None."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return "BASTION_PUBLIC_URL cannot be parsed"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "BASTION_PUBLIC_URL must look like https://host or https://host:port"
    if not (_DNS_NAME.fullmatch(parts.hostname) or _is_ipv6(parts.hostname)):
        # A space, "<" or a backslash made links that go elsewhere or nowhere, and a sender
        # (no-reply@ the host) that breaks the From header.
        return ("BASTION_PUBLIC_URL host must be a DNS name (the xn-- form for one that is "
                "not ASCII) or an IP address")
    # Compared whole: "https://host?" and "https://host#" have no query or fragment to
    # urlsplit, yet every link built on them would break.
    if url != f"{parts.scheme}://{parts.netloc}" or "@" in parts.netloc:
        return ("BASTION_PUBLIC_URL must be an origin only (no path, query, fragment or "
                "user name): links add their own paths")
    return None


def validate(cfg: Any) -> list[str]:
    """Settings that contradict each other, in any environment, and problems that make a
    production configuration unsafe."""
    problems: list[str] = []
    default, longest = cfg.get("PAT_DEFAULT_DAYS", 1), cfg.get("PAT_MAX_DAYS", 1)
    if default < 1:
        problems.append("BASTION_PAT_DEFAULT_DAYS must be at least 1")
    elif default > longest:
        problems.append(
            f"BASTION_PAT_DEFAULT_DAYS ({default}) must be between 1 and BASTION_PAT_MAX_DAYS "
            f"({longest}): a token created without an expiry would be refused"
        )
    if cfg.get("PUBLIC_URL") and (msg := public_url_problem(str(cfg["PUBLIC_URL"]))):
        problems.append(msg)
    if msg := security_contact_problem(str(cfg.get("SECURITY_CONTACT") or "")):
        problems.append(msg)
    if cfg.get("MAIL_URL"):
        from bastion.mail import mail_url_problem

        if msg := mail_url_problem(str(cfg["MAIL_URL"])):
            problems.append(msg)
    if cfg["ENV_NAME"] != "production":
        return problems
    if msg := placeholder_contact_problem(str(cfg.get("SECURITY_CONTACT") or "")):
        problems.append(msg)
    if msg := secret_strength_problem(cfg.get("SECRET_KEY")):
        problems.append(msg)
    # Flask accepts cookies signed with any fallback: each one must be as strong.
    for index, old_key in enumerate(cfg.get("SECRET_KEY_FALLBACKS") or ()):
        if msg := secret_strength_problem(old_key, f"BASTION_SECRET_KEY_FALLBACKS[{index}]"):
            problems.append(msg)
    if not cfg.get("JWT_KEYS"):
        problems.append(
            "BASTION_JWT_KEYS (or BASTION_JWT_KEYS_FILE) is missing: the API needs its own "
            "signing keys (generate them with `python -m bastion.api.keys`)"
        )
    else:
        from bastion.api.keys import keyset_problem

        if msg := keyset_problem(cfg["JWT_KEYS"]):
            problems.append(msg)
    if cfg.get("DEBUG"):
        problems.append("BASTION_DEBUG is on: the debugger runs code for anyone who can reach it")
    if get_debug_flag():
        # `flask run` (and any flask command) turns app.debug on after this check.
        problems.append("FLASK_DEBUG is on: `flask run` would serve the interactive debugger")
    if cfg.get("TESTING"):
        problems.append("BASTION_TESTING is on in production")
    if not cfg.get("RATELIMIT_ENABLED"):
        problems.append(
            "BASTION_RATELIMIT_ENABLED is off: sign-in, token, upload and API routes would have no limits"
        )
    if str(cfg["SQLALCHEMY_DATABASE_URI"]).startswith("sqlite"):
        problems.append("BASTION_DATABASE_URL is SQLite; production needs PostgreSQL")
    # Other roles may be added; admins may not be left out: the admin area resets other
    # people's second factors and roles, and its pages promise an admin with 2FA.
    roles = cfg.get("REQUIRE_2FA_ROLES", "admin")  # normalised by then; a bare dict in tests
    if "admin" not in (roles.split(",") if isinstance(roles, str) else roles):
        problems.append(
            "BASTION_REQUIRE_2FA_ROLES leaves out admin: every admin must have a second factor "
            "in production (other roles may be added, e.g. admin,editor)"
        )
    from bastion.security.breached import list_problem

    if msg := list_problem():
        problems.append(msg)
    from bastion.security.transport import database_problem, mail_problem, redis_problem

    private = cfg.get("PLAINTEXT_DATA_HOSTS") or frozenset()
    database_url = str(cfg["SQLALCHEMY_DATABASE_URI"])
    # An unusable URL is already named (database_url_problem); it has no host to judge.
    if not database_url_problem(database_url) and (msg := database_problem(database_url, private)):
        problems.append(msg)
    if cfg.get("REDIS_URL") and (msg := redis_problem(str(cfg["REDIS_URL"]), private)):
        problems.append(msg)
    if cfg.get("MAIL_URL") and (msg := mail_problem(str(cfg["MAIL_URL"]), private)):
        problems.append(msg)
    if str(cfg["RATELIMIT_STORAGE_URI"]).startswith("memory"):
        problems.append(
            "BASTION_REDIS_URL is not set: in-memory rate limits are per process and reset on restart"
        )
    if not cfg.get("TRUSTED_HOSTS"):
        problems.append("BASTION_TRUSTED_HOSTS is empty: any Host header would be accepted")
    if not cfg.get("MAIL_URL"):
        # Without a server, mail goes to the development outbox: files holding working
        # confirmation, password-reset and email-change links, named in the log.
        problems.append(
            "BASTION_MAIL_URL (or BASTION_MAIL_URL_FILE) is not set: production mail must go "
            "to an SMTP relay, never to the outbox files and log lines that would hold working "
            "password-reset links; set it to smtp://user:pass@relay.example.org:587 "
            "(STARTTLS) or smtps://user:pass@relay.example.org:465"
        )
    if not cfg.get("PUBLIC_URL"):
        # Without it, links in mail are built on whichever allowed Host a request named,
        # which may be an internal name (the proxy's upstream, a Service) no reader can open.
        problems.append(
            "BASTION_PUBLIC_URL is not set: links in mail need the site's own address, "
            "e.g. https://bastion.example.org"
        )
    elif str(cfg["PUBLIC_URL"]).split(":", 1)[0] != "https":
        problems.append("BASTION_PUBLIC_URL must be an https:// address in production")
    if not cfg.get("MAIL_BACKGROUND"):
        # Sent within the request, a reset or sign-up mail makes the reply slower exactly
        # when the address has an account: the timing tells who is registered.
        problems.append(
            "BASTION_MAIL_BACKGROUND is off: replies would take longer when a mail is sent, "
            "which tells who has an account"
        )
    if not cfg.get("FORCE_HTTPS") or not cfg.get("SESSION_COOKIE_SECURE"):
        problems.append("HTTPS is not enforced (BASTION_FORCE_HTTPS / BASTION_SESSION_COOKIE_SECURE)")
    if not str(cfg.get("SESSION_COOKIE_NAME") or "").startswith("__Host-"):
        # Without the prefix a sibling subdomain can plant (toss) a session cookie.
        problems.append("BASTION_SESSION_COOKIE_NAME must start with __Host- (host-only, Secure, Path=/)")
    if not cfg.get("SESSION_COOKIE_HTTPONLY"):
        # A script injected into any page could otherwise read the session cookie and send it off.
        problems.append(
            "BASTION_SESSION_COOKIE_HTTPONLY must stay on: scripts would read the session"
        )
    if str(cfg.get("SESSION_COOKIE_SAMESITE")).lower() not in {"lax", "strict"}:
        problems.append(
            "BASTION_SESSION_COOKIE_SAMESITE must be Lax or Strict: other sites' requests "
            "would carry the session"
        )
    if cfg.get("PROXY_HOPS", 0) < 0 or cfg.get("PROXY_HOPS", 0) > 5:
        problems.append("BASTION_PROXY_HOPS must be between 0 and 5")
    token = cfg.get("METRICS_TOKEN")
    if token and len(str(token)) < MIN_METRICS_TOKEN_CHARS:
        problems.append(
            f"BASTION_METRICS_TOKEN is too short "
            f"(use at least {MIN_METRICS_TOKEN_CHARS} random characters)"
        )
    if not cfg.get("WTF_CSRF_ENABLED"):
        problems.append("BASTION_WTF_CSRF_ENABLED is off")
    return problems
