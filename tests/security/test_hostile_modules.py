"""A hostile review of the redirect, transport, breached-password and Sentry modules:
each test is an attack that used to work."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from bastion import create_app
from bastion.api.keys import new_key_entry
from bastion.config import ConfigError
from bastion.observability.sentry import scrub_event
from bastion.security import breached
from bastion.security.redirects import is_safe_next
from bastion.security.transport import database_problem, redis_problem
from tests.factories import PASSWORD, UserFactory
from tests.support.auth import AuthActions, csrf_token
from tests.test_config import STRONG

# ----------------------------------------------------------------------- redirects ---
# Each "%25" layer decodes to "%"; a thousand of them used to recurse once per layer in
# is_safe_next until Python's stack ran out (RecursionError, a 500 on the login page).
DEEP = "/%" + "25" * 1020 + "2F"


@pytest.mark.asvs("V3.7.2", "V16.5.3")
def test_deeply_encoded_next_is_refused_not_a_crash() -> None:
    assert len(DEEP) <= 2048
    assert not is_safe_next(DEEP)
    assert not is_safe_next("/%25252F%25252Fevil.test")  # three layers hiding "//"
    # A search for "%25" inside next is two layers deep and still a local page.
    assert is_safe_next("/articles?q=%2525")


@pytest.mark.asvs("V3.7.2", "V16.5.3")
def test_login_with_a_deeply_encoded_next_falls_back_to_home(app: Flask) -> None:
    user = UserFactory()
    client = app.test_client()
    resp = AuthActions(client).login(user.username, PASSWORD, next=DEEP)
    assert (resp.status_code, resp.headers["Location"]) == (302, "/")
    # Signed in: the login page sends the user on at once, through the same check.
    resp = client.get("/auth/login", query_string={"next": DEEP})
    assert (resp.status_code, resp.headers["Location"]) == (302, "/")
    resp = client.post("/auth/login", data={"next": DEEP, "csrf_token": csrf_token(client, "/")})
    assert (resp.status_code, resp.headers["Location"]) == (302, "/")


# ----------------------------------------------------------------------- transport ---
@pytest.mark.asvs("V12.3.1", "V12.3.2")
@pytest.mark.parametrize(
    "url",
    [
        # libpq connects to the query's host/hostaddr, whatever the URL's host part says.
        "postgresql+psycopg://u:p@/bastion?host=db.example.net",
        "postgresql+psycopg://u:p@/bastion?host=127.0.0.1,db.example.net:5433",
        "postgresql+psycopg://u:p@localhost/bastion?hostaddr=203.0.113.5",
        # A service file names hosts nobody here can see.
        "postgresql+psycopg://u:p@/bastion?service=prod",
    ],
)
def test_database_hosts_hidden_in_the_query_are_judged(url: str) -> None:
    assert database_problem(url, frozenset()) is not None
    assert database_problem(url + "&sslmode=verify-full", frozenset()) is None


@pytest.mark.asvs("V12.3.1")
def test_a_database_url_without_host_is_judged_by_pghost(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "postgresql+psycopg://u:p@/bastion"
    assert database_problem(url, frozenset()) is None  # the local Unix socket
    monkeypatch.setenv("PGHOST", "db.example.net")
    assert database_problem(url, frozenset()) is not None
    assert database_problem(url, frozenset({"db.example.net"})) is None


@pytest.mark.asvs("V12.3.1", "V12.3.2")
@pytest.mark.parametrize(
    "url",
    [
        # redis-py takes ?host= when the URL has no host name.
        "redis://?host=cache.example.net",
        "redis://:pw@:6379/0?host=cache.example.net",
        # redis-py reads the first of repeated options, and percent-decodes them twice.
        "rediss://cache.example.net:6380/0?ssl_cert_reqs=none&ssl_cert_reqs=required",
        "rediss://cache.example.net:6380/0?ssl_cert_reqs=%256Eone",
        # Any certificate a public CA issued to anyone would do.
        "rediss://cache.example.net:6380/0?ssl_check_hostname=false",
    ],
)
def test_redis_urls_are_judged_as_redis_py_reads_them(url: str) -> None:
    assert redis_problem(url, frozenset()) is not None


@pytest.mark.asvs("V12.3.1")
@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://u@/bastion?host=/var/run/postgresql",
        "postgresql+psycopg://u@/bastion?host=127.0.0.1:5432,[::1]:5433",
        "postgresql+psycopg://u@postgres/bastion?hostaddr=127.0.0.1",
    ],
)
def test_local_and_declared_database_hosts_still_pass(url: str) -> None:
    assert database_problem(url, frozenset({"postgres"})) is None


# ---------------------------------------------------------------- breached passwords ---
@pytest.fixture
def list_at(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point the breached-password module at a file the test controls."""
    missing = Path("/nonexistent/common-passwords.txt.gz")
    monkeypatch.setattr(breached, "DATA", missing)
    breached._entries.cache_clear()
    yield missing
    monkeypatch.undo()
    breached._entries.cache_clear()


@pytest.mark.asvs("V6.2.4", "V6.2.12", "V16.5.3")
def test_a_missing_password_list_fails_closed(list_at: Path) -> None:
    # Before: an empty set, so every common password was accepted without a word.
    with pytest.raises(breached.PasswordListError):
        breached.is_common("password123456")
    assert breached.list_problem() is not None


@pytest.mark.asvs("V6.2.4", "V6.2.12", "V16.5.3")
@pytest.mark.parametrize("content", [b"", gzip.compress(b"", mtime=0), gzip.compress(b"123456\n", mtime=0),
                                     b"not gzip at all"])
def test_an_empty_or_damaged_password_list_fails_closed(
    list_at: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, content: bytes
) -> None:
    damaged = tmp_path / "common-passwords.txt.gz"
    damaged.write_bytes(content)
    monkeypatch.setattr(breached, "DATA", damaged)
    with pytest.raises(breached.PasswordListError):
        breached.is_common("password123456")


@pytest.mark.asvs("V6.2.12", "V16.5.3")
def test_production_refuses_to_start_without_the_password_list(
    list_at: Path, tmp_path: Path
) -> None:
    keys = json.dumps([new_key_entry("prod-1")])
    settings = {
        "ENV_NAME": "production",
        "SECRET_KEY": STRONG,
        "TRUSTED_HOSTS": "bastion.example",
        "DATABASE_URL": "postgresql://bastion@127.0.0.1/bastion",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "JWT_KEYS": keys,
        "UPLOAD_DIR": str(tmp_path / "uploads"),
    }
    with pytest.raises(ConfigError) as info:
        create_app(settings)
    assert any("common-password list" in p for p in info.value.problems)


# ------------------------------------------------------------------------- Sentry ---
# A setup link's token is token_urlsafe(32): about one in 1,500 has no digit, and then no
# shape pattern recognised it. The link creates the first admin.
LOWER_TOKEN = "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopq"


@pytest.mark.asvs("V14.2.3", "V16.2.5")
def test_sentry_events_never_carry_a_link_token_whatever_its_shape() -> None:
    event = {
        "request": {
            "url": "https://bastion.example/setup/x",
            # The Flask integration sends headers as a dict; Referer is the setup page.
            "headers": {"Referer": f"https://bastion.example/setup/{LOWER_TOKEN}",
                        "Accept": "text/html"},
        },
        "exception": {"values": [{"value": f"cannot finish /auth//reset/{LOWER_TOKEN} now"}]},
        "breadcrumbs": {"values": [
            {"message": "redirect", "data": {
                "location": f"/auth/login?next=%2Faccount%2Femail%2F{LOWER_TOKEN}"}},
            {"message": f"GET /auth/confirm/{LOWER_TOKEN}.abc HTTP/1.1"},
        ]},
    }
    text = json.dumps(scrub_event(event))  # type: ignore[arg-type]
    assert LOWER_TOKEN not in text
    assert "/setup/[Filtered]" in text and "text/html" in text
