"""Configuration: production refuses unsafe settings, all of them named in one message."""

from __future__ import annotations

import json
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
    ):
        assert expected in message
    assert len(info.value.problems) == 7


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
    monkeypatch.setenv("BASTION_PROXY_HOPS", "1")
    keys_file = tmp_path / "jwt_keys.json"
    keys_file.write_text(json.dumps([new_key_entry("prod-1")]))
    monkeypatch.setenv("BASTION_JWT_KEYS_FILE", str(keys_file))
    app = create_app({"ENV_NAME": "production"})
    assert app.config["SECRET_KEY"] == STRONG  # read from the file, newline stripped
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
