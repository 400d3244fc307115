"""gunicorn's start-up announcement: a collected log never holds a live setup link."""

from __future__ import annotations

import runpy
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

import bastion
from bastion.extensions import db
from bastion.models import SetupToken

CONF = Path(__file__).resolve().parents[2] / "gunicorn.conf.py"


def _when_ready(monkeypatch: pytest.MonkeyPatch, app: Flask, setting: str | None) -> None:
    """Run gunicorn.conf.py's ``when_ready`` as the master does, on ``app``."""
    if setting is None:
        monkeypatch.delenv("BASTION_ANNOUNCE_SETUP", raising=False)
    else:
        monkeypatch.setenv("BASTION_ANNOUNCE_SETUP", setting)
    monkeypatch.setattr(bastion, "create_app", lambda: app)
    hooks: dict[str, Any] = runpy.run_path(str(CONF))
    warnings: list[str] = []
    server = SimpleNamespace(log=SimpleNamespace(warning=lambda *a: warnings.append(str(a))))
    hooks["when_ready"](server)
    assert warnings == []


def _tokens(app: Flask) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(SetupToken)) or 0


@pytest.mark.asvs("V16.2.5", "V14.2.1")
def test_a_server_whose_output_is_a_log_prints_how_to_get_a_link_not_the_link(
    make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """In a container gunicorn's standard error is the log a collector ships and others
    read; a live link there let any of them become the first admin."""
    app = make_app(PUBLIC_URL="https://bastion.example.org")
    _when_ready(monkeypatch, app, None)
    err = capsys.readouterr().err
    assert "/setup/" not in err
    assert "flask --app bastion setup-url" in err
    assert _tokens(app) == 0  # nothing minted that the log could have held


def test_the_link_is_printed_when_asked_for_and_never_with_announcing_off(
    make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    app = make_app(PUBLIC_URL="https://bastion.example.org")
    _when_ready(monkeypatch, app, "0")
    assert capsys.readouterr().err == ""
    _when_ready(monkeypatch, app, "1")
    assert "https://bastion.example.org/setup/" in capsys.readouterr().err
    assert _tokens(app) == 1


def test_setup_url_names_the_public_address_by_default(
    make_app: Callable[..., Flask], capsys: pytest.CaptureFixture[str]
) -> None:
    """What the start-up line tells the operator to run gives a link they can open."""
    app = make_app(PUBLIC_URL="https://bastion.example.org")
    result = app.test_cli_runner().invoke(args=["setup-url"])
    assert result.exit_code == 0, result.output
    assert "https://bastion.example.org/setup/" in capsys.readouterr().err + result.output


@pytest.mark.parametrize(
    ("base_url", "problem"),
    [
        ("https://bastion.example.org/admin?x#", "must be an origin only"),
        ("javascript:alert(1)", "must look like https://host"),
        ("https://bastion example.org", "host must be a DNS name"),
    ],
)
def test_setup_url_refuses_an_address_the_link_cannot_be_built_on(
    make_app: Callable[..., Flask], base_url: str, problem: str
) -> None:
    """A usage error naming the option, not a broken link printed with exit 0 and a live
    token spent on it."""
    app = make_app()
    result = app.test_cli_runner().invoke(args=["setup-url", "--base-url", base_url])
    assert result.exit_code == 2, result.output
    assert "--base-url" in result.output and problem in result.output
    assert _tokens(app) == 0
    result = app.test_cli_runner().invoke(
        args=["setup-url", "--base-url", " https://bastion.example.org/ "])
    assert result.exit_code == 0, result.output
    assert _tokens(app) == 1
