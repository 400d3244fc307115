"""Bastion in its production configuration passes its own deploy check with zero findings."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from bastion.api.keys import new_key_entry
from flask_deploy_check.runner import run_checks

ROOT = Path(__file__).resolve().parents[2]


def production_env(database_url: str) -> dict[str, str]:
    return {
        "BASTION_ENV": "production",
        "BASTION_SECRET_KEY": secrets.token_urlsafe(48),
        "BASTION_DATABASE_URL": database_url,
        "BASTION_REDIS_URL": "redis://127.0.0.1:6379/0",
        "BASTION_TRUSTED_HOSTS": "bastion.example,localhost",
        "BASTION_PROXY_HOPS": "1",
        # The API's signing keys, made by the code behind `flask --app bastion api new-key`.
        "BASTION_JWT_KEYS": json.dumps([new_key_entry("prod-1")]),
        # Production mails through a relay (never to the outbox); nothing is sent here.
        "BASTION_MAIL_URL": "smtp://127.0.0.1:9",
        "BASTION_PUBLIC_URL": "https://bastion.example",
        # Where security.txt sends reports: production refuses the reserved example domains.
        "BASTION_SECURITY_CONTACT": "mailto:security@bastion-site.org",
    }


@pytest.mark.asvs("V13.4.2", "V13.4.5", "V3.4.1", "V3.4.3", "V3.3.1")
def test_bastion_production_has_zero_findings(
    pg_schema_url, monkeypatch: pytest.MonkeyPatch, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    url = pg_schema_url()
    env = production_env(url)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("BASTION_UPLOAD_DIR", str(tmp_path / "uploads"))
    from flask_migrate import upgrade

    from bastion import create_app

    app = create_app()
    with app.app_context():
        upgrade()
    report = run_checks(app, deploy=True)
    assert [f"{f.id} {f.message}" for f in report.findings] == []


def test_cli_json_for_bastion_production(pg_schema_url, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url = pg_schema_url()
    env = {**os.environ, **production_env(url), "BASTION_UPLOAD_DIR": str(tmp_path / "u")}
    flask = str(Path(sys.executable).parent / "flask")
    upgrade = subprocess.run(
        [flask, "--app", "bastion", "db", "upgrade"], env=env, cwd=ROOT,
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert upgrade.returncode == 0, upgrade.stderr
    proc = subprocess.run(
        [flask, "--app", "bastion", "security", "check", "--deploy", "--format", "json"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["findings"] == []
