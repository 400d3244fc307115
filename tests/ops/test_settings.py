"""Operations settings: a guessable metrics token stops production; exported metric names."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families

from bastion import create_app
from bastion.api.keys import new_key_entry
from bastion.config import ConfigError
from bastion.observability import counters

STRONG = "k3y-" + "Zx9Qw2Lm7Rt5Yp1Vb8Nc4Hd6Jf0Gs3Ae" * 2
PRODUCTION = {
    "ENV_NAME": "production",
    "SECRET_KEY": STRONG,
    "DATABASE_URL": "postgresql://bastion@db.internal/bastion",
    "REDIS_URL": "redis://redis.internal:6379/0",
    "PLAINTEXT_DATA_HOSTS": "db.internal,redis.internal",  # a private network, declared
    "TRUSTED_HOSTS": "bastion.example.org",
    "JWT_KEYS": json.dumps([new_key_entry("ops-1")]),  # as `flask --app bastion api new-key`
    "MAIL_URL": "smtp://mail.internal:587",
    "PUBLIC_URL": "https://bastion.example.org",
    "SECURITY_CONTACT": "mailto:security@bastion-site.org",  # production refuses the reserved example domains
}
# The metric families dashboards and alert rules may rely on (deploy/metrics.txt).
EXPORTED = {
    "bastion_http_requests",
    "bastion_http_request_duration_seconds",
    "bastion_login_failures",
    "bastion_login_throttled",
    "bastion_2fa_failures",
    "bastion_rate_limited",
    "bastion_csrf_failures",
    "bastion_csp_reports",
    "bastion_upload_rejections",
    "bastion_token_reuse_detected",
}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("BASTION_"):
            monkeypatch.delenv(key)


@pytest.mark.usefixtures("clean_env")
@pytest.mark.asvs("V13.2.3", "V13.4.5")
def test_production_refuses_a_short_metrics_token() -> None:
    with pytest.raises(ConfigError) as info:
        create_app({**PRODUCTION, "METRICS_TOKEN": "letmein"})
    assert info.value.problems == [
        "BASTION_METRICS_TOKEN is too short (use at least 24 random characters)"
    ]
    app = create_app({**PRODUCTION, "METRICS_TOKEN": "t" * 24 + "0123456789"})
    assert app.config["RATELIMIT_STORAGE_OPTIONS"] == {
        "socket_connect_timeout": 1,
        "socket_timeout": 1,
    }


def test_fail_closed_paths_accept_a_comma_separated_setting(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(RATELIMIT_FAIL_CLOSED_PATHS="/auth/login, /api/v1/auth/token")
    assert app.config["RATELIMIT_FAIL_CLOSED_PATHS"] == ("/auth/login", "/api/v1/auth/token")


@pytest.mark.asvs("V16.2.4")
def test_exported_metric_families_are_the_documented_ones(make_app: Callable[..., Flask]) -> None:
    client = make_app(METRICS_TOKEN="x" * 32).test_client()
    client.get("/healthz")
    counters.increment("upload_rejections", reason="too_large")
    text = client.get("/metrics", headers={"Authorization": "Bearer " + "x" * 32}).text
    names = {f.name for f in text_string_to_metric_families(text) if f.name.startswith("bastion_")}
    assert names == EXPORTED
    listed = Path(__file__).resolve().parents[2] / "deploy" / "metrics.txt"
    if listed.exists():  # the deployment files name exactly what the app exports
        documented = {
            line.strip().removesuffix("_total")
            for line in listed.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")
        }
        assert documented == EXPORTED
