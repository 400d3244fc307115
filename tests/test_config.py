"""Configuration: production refuses unsafe settings, all of them named in one message."""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path

import pytest

from bastion import create_app
from bastion.api.keys import new_key_entry
from bastion.config import ConfigError

STRONG = "k3y-" + "Zx9Qw2Lm7Rt5Yp1Vb8Nc4Hd6Jf0Gs3Ae" * 2


@pytest.mark.asvs("V13.4.2", "V13.3.1")
def test_production_refuses_every_unsafe_setting_in_one_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key in list(os.environ):
        if key.startswith("BASTION_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("BASTION_DEBUG", "true")
    monkeypatch.setenv("BASTION_FORCE_HTTPS", "false")
    with pytest.raises(ConfigError) as info:
        create_app({"ENV_NAME": "production"})
    message = str(info.value)
    for expected in (
        "BASTION_SECRET_KEY is missing",
        "BASTION_DEBUG is on",
        "SQLite",
        "BASTION_REDIS_URL is not set",
        "BASTION_TRUSTED_HOSTS is empty",
        "HTTPS is not enforced",
        "BASTION_JWT_KEYS",
        "BASTION_MAIL_URL (or BASTION_MAIL_URL_FILE) is not set",
        "BASTION_SECURITY_CONTACT (mailto:security@example.org) is a placeholder",
        "BASTION_PUBLIC_URL is not set",
    ):
        assert expected in message
    assert len(info.value.problems) == 10


def test_a_refusal_without_bastion_env_says_how_to_start_in_development(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A developer's first ``flask --app bastion ...`` without ``.env`` met production's eight
    problems with no word of why production's rules applied."""
    for key in list(os.environ):
        if key.startswith("BASTION_"):
            monkeypatch.delenv(key)
    with pytest.raises(ConfigError) as unnamed:
        create_app()
    assert str(unnamed.value).endswith(
        "\nBASTION_ENV is not set, so these are production's rules. On a development "
        "machine, `cp .env.example .env` in the project directory first (it sets "
        "BASTION_ENV=development)."
    )
    assert not any("BASTION_ENV" in problem for problem in unnamed.value.problems)

    monkeypatch.setenv("BASTION_ENV", "production")
    with pytest.raises(ConfigError) as named:
        create_app()
    assert "BASTION_ENV is not set" not in str(named.value)


def test_production_refuses_mail_sent_within_the_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Sent inside the request, a reset mail makes the answer slower exactly when the
    address has an account; production keeps mail in the background."""
    with pytest.raises(ConfigError) as info:
        _production(monkeypatch, BASTION_MAIL_BACKGROUND="false")
    assert info.value.problems == [
        "BASTION_MAIL_BACKGROUND is off: replies would take longer when a mail is sent, "
        "which tells who has an account"
    ]
    assert _production(monkeypatch, BASTION_MAIL_BACKGROUND="true").config["MAIL_BACKGROUND"]


@pytest.mark.parametrize(
    ("secret", "problem"),
    [("dev", "too short"), ("a" * 64, "not random enough"), ("changeme" * 5, "not random")],
)
@pytest.mark.asvs("V13.3.1")
def test_weak_secret_keys_are_refused(secret: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        create_app(
            {
                "ENV_NAME": "production",
                "SECRET_KEY": secret,
                "DATABASE_URL": "postgresql://u@127.0.0.1/x",
                "REDIS_URL": "redis://127.0.0.1:6379/0",
                "TRUSTED_HOSTS": "example.org",
            }
        )


def test_safe_production_settings_start(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(STRONG + "\n")
    monkeypatch.setenv("BASTION_SECRET_KEY_FILE", str(secret_file))
    monkeypatch.setenv("BASTION_DATABASE_URL", "postgresql://bastion@127.0.0.1/bastion")
    monkeypatch.setenv("BASTION_REDIS_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("BASTION_TRUSTED_HOSTS", "bastion.example, www.bastion.example")
    monkeypatch.setenv("BASTION_SECURITY_CONTACT", "mailto:security@bastion-site.org")
    monkeypatch.setenv("BASTION_PROXY_HOPS", "1")
    monkeypatch.setenv("BASTION_PUBLIC_URL", "https://bastion.example")
    keys_file = tmp_path / "jwt_keys.json"
    keys_file.write_text(json.dumps([new_key_entry("prod-1")]))
    monkeypatch.setenv("BASTION_JWT_KEYS_FILE", str(keys_file))
    mail_file = tmp_path / "mail_url"
    mail_file.write_text("smtp://mailer:p%23ss@mail.bastion.example:587\n")
    monkeypatch.setenv("BASTION_MAIL_URL_FILE", str(mail_file))
    app = create_app({"ENV_NAME": "production"})
    assert app.config["SECRET_KEY"] == STRONG  # read from the file, newline stripped
    assert app.config["MAIL_URL"] == "smtp://mailer:p%23ss@mail.bastion.example:587"
    assert app.config["TRUSTED_HOSTS"] == ["bastion.example", "www.bastion.example"]
    assert app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql+psycopg://")
    assert app.config["PROXY_HOPS"] == 1
    assert not app.debug


def test_unknown_environment_is_refused() -> None:
    with pytest.raises(ConfigError, match="BASTION_ENV must be one of"):
        create_app({"ENV_NAME": "staging"})


@pytest.mark.parametrize(("default", "maximum", "problem"), [
    (30, 7, r"PAT_DEFAULT_DAYS \(30\) must be between 1 and BASTION_PAT_MAX_DAYS"),
    (0, 7, "PAT_DEFAULT_DAYS must be at least 1"),
])
def test_a_token_default_beyond_the_maximum_is_refused_at_start(
    tmp_path: Path, default: int, maximum: int, problem: str
) -> None:
    """Otherwise every personal token created without an expiry would be refused."""
    with pytest.raises(ConfigError, match=problem):
        create_app({"ENV_NAME": "development", "SECRET_KEY": "x" * 64, "PAT_DEFAULT_DAYS": default,
                    "PAT_MAX_DAYS": maximum, "DATABASE_URL": f"sqlite:///{tmp_path}/a.db"})


def test_unreadable_secret_file_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BASTION_SECRET_KEY_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="BASTION_SECRET_KEY_FILE cannot be read"):
        create_app({"ENV_NAME": "production"})


@pytest.mark.asvs("V13.3.1")
def test_development_generates_a_private_secret_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("BASTION_SECRET_KEY", raising=False)
    import bastion

    monkeypatch.setattr(bastion, "__name__", "bastion")
    from flask import Flask

    from bastion.config import load_config

    first = Flask("bastion", instance_path=str(tmp_path / "instance"))
    load_config(first, {"ENV_NAME": "development"})
    key_file = tmp_path / "instance" / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(first.config["SECRET_KEY"]) >= 48
    second = Flask("bastion", instance_path=str(tmp_path / "instance"))
    load_config(second, {"ENV_NAME": "development"})
    assert second.config["SECRET_KEY"] == first.config["SECRET_KEY"]
    assert not first.debug


def test_an_app_with_rate_limiting_off_starts_in_a_fresh_process(tmp_path: Path) -> None:
    """Flask-Limiter's instance is shared: in a process where no other app has set it up,
    an app that turns limits off must not reach for a store that was never made."""
    import subprocess
    import sys

    config = {
        "ENV_NAME": "testing",
        "RATELIMIT_ENABLED": False,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
        "UPLOAD_DIR": str(tmp_path / "uploads"),
        "OUTBOX_DIR": str(tmp_path / "outbox"),
    }
    code = "import json, sys; from bastion import create_app; create_app(json.loads(sys.argv[1]))"
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]


def _production(monkeypatch: pytest.MonkeyPatch, **env: str | None):  # type: ignore[no-untyped-def]
    """create_app() with a safe production environment plus ``env`` (as an operator sets it;
    a variable given as None is left unset)."""
    for key in list(os.environ):
        if key.startswith("BASTION_") or key == "FLASK_DEBUG":
            monkeypatch.delenv(key)
    safe = {
        "BASTION_SECRET_KEY": STRONG,
        "BASTION_DATABASE_URL": "postgresql://bastion@127.0.0.1/bastion",
        "BASTION_REDIS_URL": "redis://127.0.0.1:6379/0",
        "BASTION_TRUSTED_HOSTS": "bastion.example",
        "BASTION_PROXY_HOPS": "1",
        "BASTION_JWT_KEYS": json.dumps([new_key_entry("prod-1")]),
        "BASTION_MAIL_URL": "smtp://mailer:secret@mail.bastion.example:587",
        "BASTION_PUBLIC_URL": "https://bastion.example",
        "BASTION_SECURITY_CONTACT": "mailto:security@bastion-site.org",
    }
    for key, value in {**safe, **env}.items():
        if value is not None:
            monkeypatch.setenv(key, value)
    return create_app({"ENV_NAME": "production"})


@pytest.mark.asvs("V16.2.5")
@pytest.mark.parametrize("mail_url", [None, ""])
def test_production_refuses_to_start_without_a_mail_server(
    monkeypatch: pytest.MonkeyPatch, mail_url: str | None
) -> None:
    """Without BASTION_MAIL_URL every message, with its working password-reset, confirmation
    or email-change link, would be written to the outbox on disk (development's mailbox)."""
    with pytest.raises(ConfigError) as info:
        _production(monkeypatch, BASTION_MAIL_URL=mail_url)
    (problem,) = info.value.problems
    assert problem.startswith("BASTION_MAIL_URL (or BASTION_MAIL_URL_FILE) is not set")
    assert "smtp://" in problem and "smtps://" in problem  # says how to set it
    assert _production(monkeypatch).config["MAIL_URL"].startswith("smtp://")


@pytest.mark.asvs("V2.4.1", "V6.3.1")
def test_rate_limits_cannot_be_switched_off_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    """Flask-Limiter's own switch would silently remove every sign-in and API limit."""
    with pytest.raises(ConfigError, match="BASTION_RATELIMIT_ENABLED is off"):
        _production(monkeypatch, BASTION_RATELIMIT_ENABLED="false")


@pytest.mark.asvs("V13.4.2")
def test_flask_debug_cannot_turn_the_debugger_on_in_production(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`flask run` sets app.debug from FLASK_DEBUG after create_app() validated DEBUG."""
    from flask.cli import ScriptInfo

    _production(monkeypatch)  # the environment, safe so far
    monkeypatch.setenv("FLASK_DEBUG", "1")
    cli_app = ScriptInfo(create_app=lambda: create_app({"ENV_NAME": "production"}))
    with pytest.raises(ConfigError, match="FLASK_DEBUG is on"):
        cli_app.load_app()  # before the fix: an app with debug (the debugger) on


@pytest.mark.asvs("V11.2.3")
def test_a_fallback_key_from_the_environment_is_one_key_not_one_per_character(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Flask iterates SECRET_KEY_FALLBACKS: the plain string an operator writes in the
    environment would make each of its characters a key that signs valid cookies."""
    from flask import Flask

    old_key = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a6978"
    app = _production(monkeypatch, BASTION_SECRET_KEY_FALLBACKS=old_key)
    forger = Flask("forger")
    forger.secret_key = "0"  # one character of the old key
    forged = forger.session_interface.get_signing_serializer(forger).dumps(  # type: ignore[attr-defined]
        {"pending_2fa": {"uid": 1, "exp": 9e9}}
    )
    with app.test_request_context(headers={"Cookie": f"__Host-session={forged}"}):
        from flask import request

        opened = app.session_interface.open_session(app, request)
        assert opened is not None and "pending_2fa" not in opened
    assert app.config["SECRET_KEY_FALLBACKS"] == [old_key]


@pytest.mark.parametrize(
    ("fallbacks", "problem"),
    [('["dev"]', r"SECRET_KEY_FALLBACKS\[0\] is too short"),
     (json.dumps([STRONG, "a" * 64]), r"SECRET_KEY_FALLBACKS\[1\] is not random enough")],
)
@pytest.mark.asvs("V11.2.3", "V13.3.1")
def test_weak_fallback_keys_are_refused(
    monkeypatch: pytest.MonkeyPatch, fallbacks: str, problem: str
) -> None:
    """A fallback key verifies cookies exactly like the main key, so it must be as strong."""
    with pytest.raises(ConfigError, match=problem):
        _production(monkeypatch, BASTION_SECRET_KEY_FALLBACKS=fallbacks)


OLD_KEY = "0ld-" + "Vb8Nc4Hd6Jf0Gs3AeZx9Qw2LQm7Rt5Yp1" * 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [(OLD_KEY + "\n", [OLD_KEY]), (json.dumps([OLD_KEY, STRONG]) + "\n", [OLD_KEY, STRONG])],
)
@pytest.mark.asvs("V13.3.1")
def test_fallback_keys_can_come_from_a_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, text: str, expected: list[str]
) -> None:
    """Old keys are secrets like the current one: a container secret, in the variable's
    format (one key, or a JSON list)."""
    path = tmp_path / "secret_key_fallbacks"
    path.write_text(text)
    app = _production(monkeypatch, BASTION_SECRET_KEY_FALLBACKS_FILE=str(path))
    assert app.config["SECRET_KEY_FALLBACKS"] == expected


@pytest.mark.parametrize(
    ("content", "problem"),
    [(None, "BASTION_SECRET_KEY_FALLBACKS_FILE cannot be read"),
     (b"\xff\xfe\x84\x88!{h\xfee\x86\xb5 not text", "BASTION_SECRET_KEY_FALLBACKS_FILE is not UTF-8 text"),
     (b'["' + OLD_KEY.encode(), "BASTION_SECRET_KEY_FALLBACKS must be one key or a JSON list"),
     (b'["dev"]', r"BASTION_SECRET_KEY_FALLBACKS\[0\] is too short")],
)
@pytest.mark.asvs("V13.3.1", "V11.2.3")
def test_a_bad_fallback_file_stops_start_up(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, content: bytes | None, problem: str
) -> None:
    """Reported like the other secret files; a weak old key from a file is refused like
    one from the environment, since it still verifies cookies."""
    path = tmp_path / "secret_key_fallbacks"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=problem):
        _production(monkeypatch, BASTION_SECRET_KEY_FALLBACKS_FILE=str(path))


@pytest.mark.parametrize(
    "secret",
    [
        "you-will-never-guess-this-secret-key",  # microblog's fallback, lengthened
        "192b9bdd22ab9ed4d12e236c78afcb9a393ec15f71bbf5dc987d54727823bcbf",  # Flask docs
    ],
)
@pytest.mark.asvs("V13.3.1")
def test_published_sample_keys_are_refused(monkeypatch: pytest.MonkeyPatch, secret: str) -> None:
    """Long and varied enough for the entropy estimate, yet in every attacker's wordlist."""
    with pytest.raises(ConfigError, match="published sample value"):
        _production(monkeypatch, BASTION_SECRET_KEY=secret)


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("BASTION_SESSION_COOKIE_NAME", "bastion_session", "must start with __Host-"),
        ("BASTION_SESSION_COOKIE_SAMESITE", "None", "must be Lax or Strict"),
        ("BASTION_SESSION_COOKIE_SAMESITE", "null", "must be Lax or Strict"),
        ("BASTION_SESSION_COOKIE_HTTPONLY", "false", "must stay on"),
    ],
)
@pytest.mark.asvs("V3.3.2", "V3.3.3", "V3.3.4")
def test_session_cookie_protections_cannot_be_configured_away(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, problem: str
) -> None:
    with pytest.raises(ConfigError, match=problem):
        _production(monkeypatch, **{name: value})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BASTION_PROXY_HOPS", ""),  # was a ValueError traceback
        ("BASTION_PROXY_HOPS", "1.9"),  # was silently 1
        ("BASTION_PROXY_HOPS", "true"),  # was silently 1
        ("BASTION_SESSION_IDLE_MINUTES", "thirty"),
        ("BASTION_SESSION_IDLE_MINUTES", "0"),
        ("BASTION_SESSION_ABSOLUTE_HOURS", "100000000"),  # every sign-in failed with a 500
        ("BASTION_REMEMBER_DAYS", "1e400"),  # was an OverflowError traceback
        ("BASTION_JWT_REFRESH_DAYS", "-1"),
        # Request limits: every form post or API call was a 500 (text) or a 413 (negative).
        ("BASTION_MAX_CONTENT_LENGTH", "10MB"),
        ("BASTION_MAX_CONTENT_LENGTH", "-1"),
        ("BASTION_MAX_FORM_MEMORY_SIZE", "256k"),
        ("BASTION_MAX_FORM_PARTS", "many"),
        ("BASTION_API_MAX_BODY_BYTES", "1M"),
        ("BASTION_API_MAX_BODY_BYTES", "-3"),
        ("BASTION_MAX_UPLOAD_MB", "0"),  # every image "larger than 0 MB"
        ("BASTION_MAX_UPLOAD_MB", "-1"),
        ("BASTION_UPLOAD_QUOTA_FILES", "-1"),
        ("BASTION_UPLOAD_QUOTA_MB", "-5"),
        ("BASTION_SETUP_TOKEN_MINUTES", "-5"),  # a first-admin link dead when printed
        ("BASTION_SETUP_TOKEN_MINUTES", "an hour"),
    ],
)
@pytest.mark.asvs("V2.2.1")
def test_numeric_typos_are_named_problems(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    """Refused with the setting's name in the one message, never guessed or a traceback."""
    with pytest.raises(ConfigError, match=f"{name} must be a whole number"):
        _production(monkeypatch, **{name: value})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BASTION_LOGIN_THROTTLE_BASE_SECONDS", "0"),
        ("BASTION_LOGIN_THROTTLE_MAX_SECONDS", "0"),
        ("BASTION_LOGIN_THROTTLE_MAX_SECONDS", "NaN"),
        ("BASTION_LOGIN_THROTTLE_FORGET_SECONDS", "0"),
    ],
)
@pytest.mark.asvs("V6.3.1")
def test_a_login_throttle_that_never_waits_is_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    """A zero (or NaN) delay, or failures forgotten at once, switch password-guessing
    protection off without a word."""
    with pytest.raises(ConfigError, match=name):
        _production(monkeypatch, **{name: value})


@pytest.mark.parametrize("value", ["61", "86400", "1e9", "-1"])
def test_public_pages_are_reused_for_a_minute_at_most(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """Other workers serve a withdrawn article for as long as they reuse their copy."""
    with pytest.raises(ConfigError, match=r"BASTION_PUBLIC_PAGE_CACHE_SECONDS must be a "
                                          r"number of seconds in 0\.\.60"):
        _production(monkeypatch, BASTION_PUBLIC_PAGE_CACHE_SECONDS=value)
    app = _production(monkeypatch, BASTION_PUBLIC_PAGE_CACHE_SECONDS="60")
    assert app.config["PUBLIC_PAGE_CACHE_SECONDS"] == 60.0


@pytest.mark.parametrize("value", ["warn", "verbose", "trace"])
def test_a_log_level_logging_does_not_know_stops_start_up(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """Named with the other problems, not a ValueError traceback from ``logging``."""
    with pytest.raises(ConfigError, match=f"BASTION_LOG_LEVEL must be one of DEBUG, INFO, "
                                          f"WARNING, ERROR, CRITICAL, not {value!r}"):
        _production(monkeypatch, BASTION_LOG_LEVEL=value)


def test_a_log_level_is_read_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    """``info`` as GUNICORN_LOG_LEVEL is spelt: every worker used to die on it."""
    logger = logging.getLogger("bastion")
    before = logger.level
    try:
        app = _production(monkeypatch, BASTION_LOG_LEVEL=" warning ")
        assert app.config["LOG_LEVEL"] == "WARNING"
        assert logger.level == logging.WARNING
        assert _production(monkeypatch, BASTION_LOG_LEVEL="10").config["LOG_LEVEL"] == "DEBUG"
    finally:
        logger.setLevel(before)  # later tests read INFO records


@pytest.mark.parametrize("value", ["5", "-0.1", "NaN", "all"])
def test_a_sentry_sample_rate_outside_0_to_1_stops_start_up(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    with pytest.raises(ConfigError, match="BASTION_SENTRY_TRACES_SAMPLE_RATE must be a "
                                          r"fraction in 0\.\.1"):
        _production(monkeypatch, BASTION_SENTRY_TRACES_SAMPLE_RATE=value)
    app = _production(monkeypatch, BASTION_SENTRY_TRACES_SAMPLE_RATE="0.25")
    assert app.config["SENTRY_TRACES_SAMPLE_RATE"] == 0.25


def test_numbers_with_spaces_still_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    app = _production(monkeypatch, BASTION_PROXY_HOPS=" 1 ", BASTION_SESSION_IDLE_MINUTES="15")
    assert app.config["PROXY_HOPS"] == 1 and app.config["SESSION_IDLE_MINUTES"] == 15


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("smtp://mailer:pa#ss@mail.example.org:587", "cannot be parsed"),  # '#' ends the host
        ("smtp://mail.example.org:58 7", "cannot be parsed"),
        ("http://mail.example.org", "must start with smtp"),
        ("smtp://:587", "names no host"),
    ],
)
def test_an_unusable_mail_url_stops_start_up(
    monkeypatch: pytest.MonkeyPatch, value: str, problem: str
) -> None:
    """Found at start-up, not on a user's reset request."""
    with pytest.raises(ConfigError, match=f"BASTION_MAIL_URL {problem}"):
        _production(monkeypatch, BASTION_MAIL_URL=value)


def test_a_usable_mail_url_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    from bastion.mail import mail_url_problem

    assert mail_url_problem("smtps://mailer:p%23ss@mail.example.org:465") is None
    assert mail_url_problem("smtp://127.0.0.1:2525?tls=none") is None


@pytest.mark.asvs("V6.3.3")
@pytest.mark.parametrize("value", ["Admin", "admins", "admin;editor", "admin, root"])
def test_a_misspelt_role_that_must_have_2fa_stops_start_up(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """Otherwise "Admin" would leave every admin without the mandatory second factor."""
    with pytest.raises(ConfigError, match="BASTION_REQUIRE_2FA_ROLES names no role"):
        _production(monkeypatch, BASTION_REQUIRE_2FA_ROLES=value)


@pytest.mark.asvs("V6.3.3")
@pytest.mark.parametrize("value", ["", " ", "editor", "viewer,editor"])
def test_production_refuses_admins_without_a_second_factor(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """The admin area resets other people's second factors: an operator who trims the list
    must not leave admins out of it."""
    with pytest.raises(ConfigError) as info:
        _production(monkeypatch, BASTION_REQUIRE_2FA_ROLES=value)
    assert any("BASTION_REQUIRE_2FA_ROLES leaves out admin" in p for p in info.value.problems)


@pytest.mark.asvs("V6.3.3")
def test_roles_that_must_have_2fa_are_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = _production(monkeypatch, BASTION_REQUIRE_2FA_ROLES=" admin , editor ")
    assert app.config["REQUIRE_2FA_ROLES"] == frozenset({"admin", "editor"})
    assert _production(monkeypatch).config["REQUIRE_2FA_ROLES"] == frozenset({"admin"})


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0", False), ("off", False), (" No ", False), ("false", False),
     ("1", True), ("on", True), ("YES", True), ("true", True)],
)
def test_switches_take_the_usual_words(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: bool
) -> None:
    """``0``/``off`` mean off: before, "off" was a non-empty (truthy) string and ``0`` a number
    that made the session cookie's attribute ``Secure=0``."""
    for key in list(os.environ):
        if key.startswith("BASTION_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("BASTION_ENV", "development")
    monkeypatch.setenv("BASTION_SESSION_COOKIE_SECURE", value)
    monkeypatch.setenv("BASTION_WTF_CSRF_SSL_STRICT", value)
    monkeypatch.setenv("BASTION_USE_X_SENDFILE", value)  # one of Flask's own switches
    app = create_app({"DATABASE_URL": "sqlite://"})
    for key in ("SESSION_COOKIE_SECURE", "WTF_CSRF_SSL_STRICT", "USE_X_SENDFILE"):
        assert app.config[key] is expected, key
    cookie = app.test_client().get("/auth/login").headers["Set-Cookie"]
    assert ("; Secure" in cookie) is expected and "Secure=" not in cookie


@pytest.mark.parametrize(
    ("name", "value"),
    [("BASTION_RATELIMIT_ENABLED", "flase"), ("BASTION_SESSION_COOKIE_SECURE", "2"),
     ("BASTION_DEBUG", "maybe"), ("BASTION_FORCE_HTTPS", "")],
)
@pytest.mark.asvs("V13.4.2")
def test_a_switch_that_is_neither_on_nor_off_stops_start_up(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    """A typo is named, never guessed: "flase" counted as on, "maybe" as off."""
    with pytest.raises(ConfigError, match=f"{name} must be true or false"):
        _production(monkeypatch, **{name: value})


@pytest.mark.asvs("V13.4.2")
@pytest.mark.parametrize(
    "contact",
    ["security@bastion.example", "http://bastion.example/security",
     "mailto:security@bastion.example\nCanonical: https://evil.example/.well-known/security.txt",
     "mailto:sec urity@bastion.example", ""],
    ids=["bare-address", "plain-http", "line-break", "space", "empty"],
)
def test_a_security_contact_that_breaks_security_txt_stops_start_up(
    monkeypatch: pytest.MonkeyPatch, contact: str
) -> None:
    """RFC 9116 wants a URI: a bare address makes the file invalid for researchers' tools,
    and a line break would add fields of its own (a second Canonical) to it."""
    with pytest.raises(ConfigError, match="BASTION_SECURITY_CONTACT must be"):
        _production(monkeypatch, BASTION_SECURITY_CONTACT=contact)


def test_a_security_contact_uri_is_served_as_the_contact(monkeypatch: pytest.MonkeyPatch) -> None:
    app = _production(monkeypatch, BASTION_SECURITY_CONTACT="https://bastion-site.org/report")
    resp = app.test_client().get("/.well-known/security.txt", base_url="https://bastion.example")
    assert "Contact: https://bastion-site.org/report\n" in resp.get_data(as_text=True)


def test_trusted_hosts_are_matched_in_any_case_as_browsers_send_them() -> None:
    """Werkzeug compares host names case-sensitively and browsers send lower case: a setting
    written "Bastion.Example" refused every visitor with 400."""
    app = create_app({"TRUSTED_HOSTS": " Bastion.Example ,WWW.Bastion.Example"})
    assert app.config["TRUSTED_HOSTS"] == ["bastion.example", "www.bastion.example"]
    client = app.test_client()
    assert client.get("/healthz", headers={"Host": "bastion.example"}).status_code == 200
    assert client.get("/healthz", headers={"Host": "evil.example"}).status_code == 400


@pytest.mark.parametrize(
    "contact",
    ["mailto:security@example.org", "mailto:sec@bastion.example", "mailto:security@bastion.invalid",
     "https://example.com/security", "https://security.test/report", "mailto:a@EXAMPLE.NET."],
)
def test_production_refuses_a_security_contact_that_reaches_no_one(
    monkeypatch: pytest.MonkeyPatch, contact: str
) -> None:
    """The default (and the deployments' templates) name reserved domains: served as it was,
    security.txt sent every researcher's report nowhere."""
    with pytest.raises(ConfigError, match="is a placeholder that reaches no one"):
        _production(monkeypatch, BASTION_SECURITY_CONTACT=contact)
    for reachable in ("tel:+1-201-555-0123", "mailto:security@examples.org",
                      "https://bastion-site.org/.well-known/report"):
        assert _production(monkeypatch, BASTION_SECURITY_CONTACT=reachable)


def test_mail_comes_from_the_public_sites_domain_unless_a_sender_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The deployments set BASTION_PUBLIC_URL but no sender: mail went out from
    no-reply@localhost, which receivers checking the sender's domain refuse or file as spam."""
    app = _production(monkeypatch, BASTION_PUBLIC_URL="https://bastion-site.org")
    assert app.config["MAIL_SENDER"] == "Bastion <no-reply@bastion-site.org>"
    chosen = "Site <robot@mail.bastion-site.org>"
    app = _production(monkeypatch, BASTION_PUBLIC_URL="https://bastion-site.org",
                      BASTION_MAIL_SENDER=chosen)
    assert app.config["MAIL_SENDER"] == chosen
