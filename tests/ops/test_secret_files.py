"""Secrets read from files (``BASTION_*_FILE``): a file that cannot be used is one problem
among the others of the same start-up, never a traceback and never the only one named."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bastion import create_app
from bastion.config import ConfigError


def _production_problems(monkeypatch: pytest.MonkeyPatch, **env: str) -> list[str]:
    """The problems a production start-up with exactly ``env`` refuses with."""
    for key in list(os.environ):
        if key.startswith("BASTION_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError) as info:
        create_app({"ENV_NAME": "production"})
    return info.value.problems


@pytest.mark.asvs("V13.3.1")
def test_every_unreadable_secret_file_is_named_with_every_other_problem(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An operator fixes all of it in one go, instead of one restart per missing mount."""
    problems = _production_problems(
        monkeypatch,
        BASTION_SECRET_KEY_FILE=str(tmp_path / "secret_key"),
        BASTION_DATABASE_URL_FILE=str(tmp_path / "database_url"),
        BASTION_DEBUG="true",
    )
    assert "BASTION_SECRET_KEY_FILE cannot be read: No such file or directory" in problems
    assert "BASTION_DATABASE_URL_FILE cannot be read: No such file or directory" in problems
    assert any(p.startswith("BASTION_DEBUG is on") for p in problems)
    assert any(p.startswith("BASTION_REDIS_URL is not set") for p in problems)
    # Nothing is guessed about the settings whose files were not read: the database URL
    # that never arrived is not reported as SQLite, the key as merely "missing".
    assert not [p for p in problems if p.startswith(("BASTION_SECRET_KEY ", "BASTION_DATABASE_URL "))]


@pytest.mark.asvs("V13.3.1")
def test_a_secret_file_of_raw_bytes_is_a_named_problem_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``head -c 48 /dev/urandom > secret_key`` is a natural way to make a key; it used to
    stop start-up with a bare UnicodeDecodeError that named no setting."""
    raw = tmp_path / "secret_key"
    raw.write_bytes(b"\x95\xff" + os.urandom(46))
    problems = _production_problems(monkeypatch, BASTION_SECRET_KEY_FILE=str(raw))
    assert [p for p in problems if p.startswith("BASTION_SECRET_KEY_FILE is not UTF-8 text")]
    assert any(p.startswith("BASTION_REDIS_URL is not set") for p in problems)


@pytest.mark.asvs("V13.3.1")
def test_a_file_setting_that_nothing_reads_stops_start_up(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A misspelt name used to be ignored: error reporting (or a rotation's old key)
    silently absent, while the operator believes the secret is in place."""
    dsn = tmp_path / "sentry_dsn"
    dsn.write_text("https://key@sentry.example/1\n")
    problems = _production_problems(
        monkeypatch,
        BASTION_SENTRY_DNS_FILE=str(dsn),
        BASTION_INTERNAL_CA_FILE=str(tmp_path / "ca.crt"),  # the health check's, not the app's
    )
    named = [p for p in problems if "_FILE" in p.split(" ")[0]]
    assert len(named) == 1 and named[0].startswith("BASTION_SENTRY_DNS_FILE is not read")
    assert "BASTION_SENTRY_DSN_FILE" in named[0]  # the settings that are, listed



@pytest.mark.asvs("V13.3.1")
@pytest.mark.parametrize(("url", "problem"), [
    # A port that is no number: SQLAlchemy's ValueError named no setting.
    ("postgresql://bastion:Pw0rd-Zq9x@db:54x2/bastion", "BASTION_DATABASE_URL cannot be parsed"),
    ("postgres ql://bastion:Pw0rd-Zq9x@db/bastion", "BASTION_DATABASE_URL cannot be parsed"),
    # A backend or driver Bastion does not install: "No module named 'MySQLdb'".
    ("mysql://bastion:Pw0rd-Zq9x@db/bastion", "BASTION_DATABASE_URL must be a postgresql:// URL"),
    ("postgresql+psycopg2://bastion:Pw0rd-Zq9x@db/bastion",
     "BASTION_DATABASE_URL must be a postgresql:// URL"),
])
def test_an_unusable_database_url_is_a_named_problem_without_its_password(
    monkeypatch: pytest.MonkeyPatch, url: str, problem: str
) -> None:
    problems = _production_problems(monkeypatch, BASTION_DATABASE_URL=url)
    assert [p for p in problems if p.startswith(problem)]
    assert any(p.startswith("BASTION_REDIS_URL is not set") for p in problems)  # and the rest
    assert "Pw0rd" not in "\n".join(problems)
