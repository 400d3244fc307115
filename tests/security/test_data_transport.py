"""Production never talks to PostgreSQL or Redis in plaintext across a network nobody
declared private, and never accepts TLS that does not verify the server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from bastion import create_app
from bastion.api.keys import new_key_entry
from bastion.config import ConfigError
from bastion.mail import mail_url_problem
from bastion.security.transport import database_problem, mail_problem, redis_problem
from tests.test_config import STRONG

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.asvs("V12.3.1", "V12.3.2")
@pytest.mark.parametrize(
    ("url", "private", "refused"),
    [
        ("postgresql+psycopg://u:p@db.example.net/bastion", (), True),
        ("postgresql+psycopg://u:p@db.example.net/bastion?sslmode=require", (), True),
        ("postgresql+psycopg://u:p@db.example.net/bastion?sslmode=prefer", (), True),
        ("postgresql+psycopg://u:p@db.example.net/bastion?sslmode=verify-full", (), False),
        ("postgresql+psycopg://u:p@db.example.net/bastion?sslmode=verify-ca", (), False),
        ("postgresql+psycopg://u:p@10.1.2.3:5432/bastion", (), True),
        ("postgresql+psycopg://u:p@postgres:5432/bastion", ("postgres",), False),
        ("postgresql+psycopg://u:p@postgres-evil:5432/bastion", ("postgres",), True),
        ("postgresql+psycopg://u@127.0.0.1/bastion", (), False),
        ("postgresql+psycopg://u@[::1]/bastion", (), False),
        ("postgresql+psycopg://u@localhost/bastion", (), False),
        ("postgresql+psycopg://u@/bastion?host=/var/run/postgresql", (), False),
    ],
)
def test_database_urls(url: str, private: tuple[str, ...], refused: bool) -> None:
    assert (database_problem(url, frozenset(private)) is not None) is refused


@pytest.mark.asvs("V12.3.1", "V12.3.2")
@pytest.mark.parametrize(
    ("url", "private", "refused"),
    [
        ("redis://:pw@cache.example.net:6379/0", (), True),
        ("rediss://:pw@cache.example.net:6380/0", (), False),
        ("rediss://:pw@cache.example.net:6380/0?ssl_cert_reqs=none", (), True),
        ("rediss://:pw@cache.example.net:6380/0?ssl_cert_reqs=optional", (), True),
        ("redis://:pw@redis:6379/0", ("redis",), False),
        ("redis://:pw@redis:6379/0", ("postgres",), True),
        ("redis://127.0.0.1:6379/0", (), False),
        ("unix:///run/redis.sock", (), False),
    ],
)
def test_redis_urls(url: str, private: tuple[str, ...], refused: bool) -> None:
    assert (redis_problem(url, frozenset(private)) is not None) is refused


@pytest.mark.asvs("V12.3.1", "V12.3.2")
@pytest.mark.parametrize(
    ("url", "private", "refused"),
    [
        ("smtp://mailer:pw@mail.example.net:587", (), False),  # STARTTLS, verified
        ("smtps://mailer:pw@mail.example.net:465", (), False),
        ("smtp://mailer:pw@mail.example.net:25?tls=none", (), True),
        ("smtp://mailer:pw@MAIL.example.net:25?tls=none", (), True),
        ("smtp://mailer:pw@10.0.0.5:25?tls=none", (), True),
        ("smtp://mail.example.net:25?tls=starttls&tls=none", (), False),  # the first counts
        ("smtp://mail.example.net:25?tls=none&tls=starttls", (), True),
        ("smtp://relay:25?tls=none", ("relay",), False),
        ("smtp://relay-evil:25?tls=none", ("relay",), True),
        ("smtp://127.0.0.1:25?tls=none", (), False),
        ("smtp://[::1]:25?tls=none", (), False),
        ("smtp://localhost:25?tls=none", (), False),
    ],
)
def test_mail_urls(url: str, private: tuple[str, ...], refused: bool) -> None:
    """The relay's password and every reset link go over this connection."""
    assert mail_url_problem(url) is None
    assert (mail_problem(url, frozenset(private)) is not None) is refused


@pytest.mark.parametrize("value", ["off", "false", "ssl", "STARTTLS "])
def test_an_unknown_tls_mode_for_mail_is_refused_not_guessed(value: str) -> None:
    problem = mail_url_problem(f"smtp://mail.example.net:587?tls={value}")
    assert problem is not None and "starttls" in problem


@pytest.mark.asvs("V12.3.1")
def test_production_refuses_to_start_with_plaintext_to_a_remote_store(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    keys = tmp_path / "jwt_keys.json"
    keys.write_text(json.dumps([new_key_entry("prod-1")]))
    settings = {
        "ENV_NAME": "production",
        "SECRET_KEY": STRONG,
        "JWT_KEYS_FILE": str(keys),
        "TRUSTED_HOSTS": "bastion.example",
        "DATABASE_URL": "postgresql://bastion@db.example.net/bastion",
        "REDIS_URL": "redis://cache.example.net:6379/0",
        "JWT_KEYS": keys.read_text(),
        "MAIL_URL": "smtp://mail.example.net:25?tls=none",
        "PUBLIC_URL": "https://bastion.example",
        "SECURITY_CONTACT": "mailto:security@bastion-site.org",
    }
    with pytest.raises(ConfigError) as info:
        create_app(settings)
    problems = info.value.problems
    assert any("BASTION_DATABASE_URL reaches db.example.net" in p for p in problems)
    assert any("BASTION_REDIS_URL reaches cache.example.net" in p for p in problems)
    assert any("BASTION_MAIL_URL sends to mail.example.net without TLS" in p for p in problems)
    app = create_app(
        {**settings, "PLAINTEXT_DATA_HOSTS": "db.example.net, cache.example.net, mail.example.net"}
    )
    assert app.config["PLAINTEXT_DATA_HOSTS"] == {
        "db.example.net", "cache.example.net", "mail.example.net"
    }


@pytest.mark.asvs("V12.3.1")
def test_compose_allows_plaintext_only_to_stores_on_its_internal_network() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    env = compose["services"]["app"]["environment"]
    declared = {h.strip() for h in env["BASTION_PLAINTEXT_DATA_HOSTS"].split(",")}
    assert declared == {"postgres", "redis"}
    assert compose["networks"]["backend"]["internal"] is True
    for host in declared:
        assert compose["services"][host]["networks"] == ["backend"], host
        assert "ports" not in compose["services"][host], host
