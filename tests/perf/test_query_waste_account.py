"""Columns and rows the account, profile and audit pages read without showing them.

The account page lists sessions and personal access tokens: it shows neither token hash.
A public profile shows a name, a bio and a photo: it has no use for the owner's password
hash, TOTP secret, email or security stamp. The audit page counted the whole trail on every
view, work that grows with the table forever: it now counts at most ``COUNT_MAX + 1`` rows
and pages on past them. Each test reads the statements a request runs (the helpers of
``test_query_counts``) and what the page shows, which must not change.
"""

from __future__ import annotations

import csv
import io
import json
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from html import unescape
from typing import Any

import pytest
from flask import Flask, template_rendered
from flask.testing import FlaskClient
from flask_login import current_user
from sqlalchemy import event, inspect

from bastion.admin import audit_log
from bastion.api import pats
from bastion.api.web.routes import listed_tokens
from bastion.extensions import db
from bastion.models import ApiToken, AuditEvent, User, UserSession, utcnow
from bastion.profiles.services import find_profile
from tests.factories import UserFactory
from tests.perf.test_query_counts import _get, _rows_read, _signed_in, _statements
from tests.support.roles import client_for

BACKENDS = ("sqlite", pytest.param("postgresql", marks=pytest.mark.postgres))
_backends = pytest.mark.parametrize("backend", BACKENDS)

USER_SECRETS = re.compile(r"password_hash|totp_secret|security_stamp|users\.email\b(?!_)")


def _selected(statement: str) -> str:
    """The column list of a SELECT (what it reads, not what it filters on)."""
    return statement.split(" FROM ", 1)[0]


def _one(statements: list[str], marker: str) -> str:
    (found,) = [s for s in statements if marker in " ".join(s.split())]
    return " ".join(found.split())


def _lazy_loads(statements: list[str], table: str) -> list[str]:
    """Statements that fetch one ``table`` row by its id: columns left out, read on use."""
    return [s for s in statements if f"FROM {table} WHERE {table}.id = " in " ".join(s.split())]


# ------------------------------------------------------------------------ account ---
def _sessions_and_tokens(user_id: int) -> None:
    """Other live sessions (one remembered) and tokens in every state the panel shows."""
    now = utcnow()
    for i, remember in enumerate((False, True)):
        db.session.add(UserSession(token_hash=secrets.token_hex(32), user_id=user_id,
                                   expires_at=now + timedelta(days=1), ip=f"192.0.2.{i + 10}",
                                   user_agent=f"Browser {i}", remember=remember))
    states: dict[str, dict[str, Any]] = {
        "live": {"expires_at": now + timedelta(days=30)},
        "used": {"expires_at": now + timedelta(days=30), "last_used_at": now},
        "revoked lately": {"expires_at": now + timedelta(days=30),
                           "revoked_at": now - timedelta(days=1)},
        "revoked long ago": {"expires_at": now + timedelta(days=30),
                             "revoked_at": now - pats.ENDED_LISTED_FOR - timedelta(days=1)},
        "expired lately": {"expires_at": now - timedelta(days=1)},
        "expired long ago": {"expires_at": now - pats.ENDED_LISTED_FOR - timedelta(days=1)},
    }
    for name, fields in states.items():
        db.session.add(ApiToken(user_id=user_id, name=name, token_hash=secrets.token_hex(32),
                                hint="bst_abcd", scopes="articles:read", **fields))
    db.session.commit()


@_backends
@pytest.mark.asvs("V15.2.2")
def test_account_page_reads_no_token_hashes(make_app, backend: str) -> None:  # type: ignore[no-untyped-def]
    """Before: both lists read every column (token hashes, owner, reauth time, creation
    time of each token). After: the shown ones, and no column is fetched row by row later."""
    app = make_app(backend=backend)
    client, user_id = _signed_in(app)
    with app.app_context():
        _sessions_and_tokens(user_id)
    client.get("/account")  # settle the session (CSRF token, last-seen stamp)
    statements = _get(app, client, "/account")

    listed = _selected(_one(statements, "FROM user_sessions WHERE user_sessions.user_id"))
    for column in ("id", "created_at", "last_seen_at", "expires_at", "remember", "ip",
                   "user_agent", "revoked_at"):
        assert f"user_sessions.{column}" in listed, listed
    for column in ("token_hash", "user_id", "reauth_at"):
        assert f"user_sessions.{column}" not in listed, listed

    tokens = _selected(_one(statements, "FROM api_tokens"))
    for column in ("id", "name", "hint", "scopes", "expires_at", "last_used_at", "revoked_at"):
        assert f"api_tokens.{column}" in tokens, tokens
    for column in ("token_hash", "user_id", "created_at"):
        assert f"api_tokens.{column}" not in tokens, tokens

    assert not _lazy_loads(statements, "user_sessions") + _lazy_loads(statements, "api_tokens")


@_backends
@pytest.mark.asvs("V15.2.2")
def test_token_page_reads_no_token_hashes(make_app, backend: str) -> None:  # type: ignore[no-untyped-def]
    app = make_app(backend=backend)
    client, user_id = _signed_in(app)
    with app.app_context():
        _sessions_and_tokens(user_id)
    client.get("/account/tokens")
    statements = _get(app, client, "/account/tokens")
    tokens = _selected(_one(statements, "FROM api_tokens"))
    assert "api_tokens.token_hash" not in tokens and "api_tokens.name" in tokens, tokens
    assert not _lazy_loads(statements, "api_tokens")


@pytest.mark.parametrize("stale", [False, True], ids=["fresh", "last-seen-written"])
def test_account_page_shows_the_same_sessions_and_tokens(app: Flask, stale: bool) -> None:
    """What the lists show, with the browser's own record (loaded whole for the request,
    and written back when its last-seen stamp is old) among the partly read ones."""
    user = UserFactory()
    client = client_for(app, user)
    _sessions_and_tokens(user.id)
    if stale:
        db.session.query(UserSession).filter_by(user_id=user.id).update(
            {"last_seen_at": utcnow() - timedelta(minutes=5)})
        db.session.commit()
    db.session.remove()  # nothing left in the session from the set-up
    html = client.get("/account").get_data(as_text=True)
    assert html.count("This device") == 1
    assert "Browser 0" in html and "Browser 1" in html and "192.0.2.11" in html
    assert html.count('<span class="badge">Remembered</span>') == 1
    for shown in ("live", "used", "revoked lately", "expired lately"):
        assert f"<td>{shown}</td>" in html
    for hidden in ("revoked long ago", "expired long ago"):
        assert hidden not in html
    assert html.count("badge-danger\">revoked") == 1
    assert html.count('<span class="badge">expired</span>') == 1
    assert html.count("aria-label=\"Revoke live\"") == 1


def test_listed_tokens_are_the_ones_the_api_lists(app: Flask) -> None:
    """The page's narrow rows and ``pats.list_for``'s whole ones (for the API) are the same
    tokens in the same order, in every state, and never another account's."""
    user, other = UserFactory(), UserFactory()
    _sessions_and_tokens(user.id)
    _sessions_and_tokens(other.id)
    page = [t.id for t in listed_tokens(user)]
    assert page == [t.id for t in pats.list_for(user)]
    assert len(page) == 4


# ------------------------------------------------------------------------ profile ---
@_backends
@pytest.mark.asvs("V15.2.2")
@pytest.mark.parametrize("who", ["anonymous", "viewer", "owner"])
def test_profile_page_reads_no_secrets_of_its_owner(make_app, backend: str, who: str) -> None:  # type: ignore[no-untyped-def]
    """Before: ``find_profile`` read the whole row (password hash, TOTP secret, email,
    security stamp). Only the sign-in's own query may read the signed-in user's."""
    app = make_app(backend=backend)
    with app.app_context():
        owner = UserFactory(display_name="Owner Name", bio="About *me*.")
        username = owner.username
        clients = {"anonymous": app.test_client(), "owner": client_for(app, owner)}
    if who == "viewer":
        clients["viewer"], _ = _signed_in(app)
    client = clients[who]
    client.get(f"/u/{username}")
    statements = _get(app, client, f"/u/{username}")
    profile = _one(statements, "FROM users")
    assert "users.display_name" in profile and "users.bio" in profile, profile
    assert not USER_SECRETS.search(profile), profile
    reading = [s for s in statements if "password_hash" in s]
    assert all("FROM user_sessions" in s for s in reading), reading
    assert not _lazy_loads(statements, "users")


@contextmanager
def _current_user_columns_unloaded(app: Flask) -> Iterator[list[set[str]]]:
    """The columns of the signed-in user's object left unread, as each page renders."""
    seen: list[set[str]] = []
    columns = {attr.key for attr in inspect(User).column_attrs}

    def record(sender: Flask, template: Any, context: dict[str, Any], **extra: Any) -> None:
        if current_user.is_authenticated:
            seen.append(columns & inspect(current_user._get_current_object()).unloaded)

    template_rendered.connect(record, app)
    try:
        yield seen
    finally:
        template_rendered.disconnect(record, app)


def _account_after_profile(app: Flask, client: FlaskClient, username: str) -> tuple[str, str]:
    profile = client.get(f"/u/{username}")
    assert profile.status_code == 200
    account = client.get("/account")
    assert account.status_code == 200
    return profile.get_data(as_text=True), account.get_data(as_text=True)


@_backends
def test_own_profile_then_account_page_as_on_a_server(make_app, backend: str) -> None:  # type: ignore[no-untyped-def]
    """No session kept between requests: the profile query reads the owner's row first,
    partly, and the sign-in's query in the same request completes the same object."""
    app = make_app(backend=backend)
    with app.app_context():
        me = UserFactory(display_name="Me Myself", email="me@example.com")
        client, username = client_for(app, me), me.username
    with app.app_context():
        engine = db.engine
    with _current_user_columns_unloaded(app) as unloaded:
        profile, account = _account_after_profile(app, client, username)
        alone = _get(app, client, "/account")  # the reference: no profile before it
        with _statements(engine) as seen:
            client.get(f"/u/{username}")
        with _statements(engine) as again:
            client.get("/account")
    assert unloaded and all(not u for u in unloaded), unloaded
    assert "Me Myself" in profile and "me@example.com" in account
    assert not _lazy_loads(seen, "users") and len(again) == len(alone)


def test_own_profile_then_account_page_in_one_session(app: Flask) -> None:
    """One database session across the requests (an app context held, as here in tests or
    in a batch job): the signed-in user's object serves both pages whole, whichever query
    met it first, and a partly read profile of someone else stays correct when its other
    columns are used later in the same session."""
    me = UserFactory(display_name="Me Myself", email="me@example.com")
    other = UserFactory(display_name="Someone Else")
    client, my_name, other_name = client_for(app, me), me.username, other.username
    other_id, other_hash, other_email = other.id, other.password_hash, other.email
    db.session.remove()  # the profile query meets no row already in the session
    with _current_user_columns_unloaded(app) as unloaded:
        profile, account = _account_after_profile(app, client, my_name)
        assert "Me Myself" in profile and "me@example.com" in account
        profile, account = _account_after_profile(app, client, other_name)
        assert "Someone Else" in profile and "me@example.com" in account
    assert unloaded and all(not u for u in unloaded), unloaded

    # Partly read, in the session: its other columns load on use, with their stored values.
    db.session.remove()
    partial = find_profile(other_name)
    assert partial is not None
    assert {"password_hash", "email", "totp_secret"} <= inspect(partial).unloaded
    same = db.session.get(User, other_id)
    assert same is partial
    assert (same.password_hash, same.email) == (other_hash, other_email)

    # Already whole in the session (the viewer's own row): load_only takes nothing away.
    db.session.remove()
    whole = db.session.get(User, me.id)
    assert whole is not None and find_profile(my_name) is whole
    assert not {attr.key for attr in inspect(User).column_attrs} & inspect(whole).unloaded


# -------------------------------------------------------------------------- audit ---
def _events(n: int, name: str = "login.failure") -> list[int]:
    """``n`` events a second apart, oldest first; their ids newest first."""
    now = utcnow()
    rows = [AuditEvent(event=name, ip="192.0.2.1", details={"n": i},
                       created_at=now - timedelta(seconds=n - i)) for i in range(n)]
    db.session.add_all(rows)
    db.session.commit()
    return [row.id for row in reversed(rows)]


_ROW = re.compile(r"<td class=\"audit-details\"><code>(.*?)</code></td>")


def _shown_numbers(html: str) -> list[int]:
    """The ``n`` detail of each listed event, in page order."""
    return [json.loads(unescape(cell))["n"] for cell in _ROW.findall(html)]


@_backends
@pytest.mark.asvs("V15.2.2")
def test_audit_page_counts_a_limited_subquery(make_app, backend: str) -> None:  # type: ignore[no-untyped-def]
    """Before: ``count(*)`` over every matching row, a subquery of whole rows. After: the
    ids of at most ``COUNT_MAX + 1`` of them."""
    app = make_app(backend=backend)
    client, _ = _signed_in(app, "admin")
    with app.app_context():
        _events(3)
    client.get("/admin/audit")
    statements = _get(app, client, "/admin/audit")
    (count,) = [" ".join(s.split()) for s in statements if "count(" in s and "audit_events" in s]
    assert "LIMIT" in count, count
    inner = count.split("FROM (", 1)[1]
    assert _selected(inner) in ("SELECT audit_events.id", "SELECT audit_events.id AS id"), count


@pytest.mark.postgres
@pytest.mark.asvs("V15.2.2")
def test_audit_page_count_reads_at_most_the_cap(make_app, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """The count statement stops after ``COUNT_MAX + 1`` rows, however long the trail."""
    monkeypatch.setattr(audit_log, "COUNT_MAX", 20)
    app = make_app(backend="postgresql")
    with app.app_context():
        _events(400)
        db.session.execute(db.text("ANALYZE audit_events"))
        plans: list[Any] = []

        def explain(conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
            if "count(" in statement and "audit_events" in statement:
                cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, params)
                plans.append(cursor.fetchone()[0][0]["Plan"])
            return statement, params

        event.listen(db.engine, "before_cursor_execute", explain, retval=True)
        try:
            page = audit_log.query_events(audit_log.AuditFilter())
        finally:
            event.remove(db.engine, "before_cursor_execute", explain)
        db.session.rollback()
    assert page.total == 21 and page.capped and page.has_older
    (plan,) = plans
    assert _rows_read(plan, "audit_events") <= 21, plan


def test_audit_page_under_the_cap_is_unchanged(app: Flask) -> None:
    _events(130)
    client = client_for(app, UserFactory(role_name="admin"))
    html = client.get("/admin/audit?event=login.failure").get_data(as_text=True)
    assert "130 events, newest first" in html
    assert "Page 1 of 3" in html and "More than" not in html


@pytest.mark.asvs("V15.2.2")
def test_audit_page_past_the_cap_pages_on_to_the_oldest_event(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """130 events counted up to 60: the page says "more than 60" and every event is still
    reached, page by page, through the Older links, in order, none twice."""
    monkeypatch.setattr(audit_log, "COUNT_MAX", 60)
    _events(130)
    client = client_for(app, UserFactory(role_name="admin"))
    path: str | None = "/admin/audit?event=login.failure"
    seen: list[int] = []
    pages = 0
    while path is not None:
        html = client.get(path).get_data(as_text=True)
        pages += 1
        assert "More than 60 events, newest first" in html and " of " not in _nav(html)
        seen += _shown_numbers(html)
        older = re.search(r'<a href="([^"]+)" rel="next">Older', html)
        path = older.group(1).replace("&amp;", "&") if older else None
        if pages > 1:
            assert 'rel="prev"><span aria-hidden="true">←</span> Newer' in html
    assert pages == 3
    assert seen == list(range(129, -1, -1))


def _nav(html: str) -> str:
    found = re.search(r'<nav class="pagination".*?</nav>', html, re.S)
    return found.group(0) if found else ""


def test_audit_page_offers_no_older_page_past_page_max(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_log, "COUNT_MAX", 60)
    monkeypatch.setattr(audit_log, "PAGE_MAX", 2)
    _events(130)
    client = client_for(app, UserFactory(role_name="admin"))
    html = client.get("/admin/audit?event=login.failure&page=2").get_data(as_text=True)
    assert "Page 2" in html and 'rel="next"' not in html


def test_exports_stay_complete_past_the_cap(
    app: Flask, monkeypatch: pytest.MonkeyPatch, runner: Any
) -> None:
    monkeypatch.setattr(audit_log, "COUNT_MAX", 60)
    _events(130)
    client = client_for(app, UserFactory(role_name="admin"))
    export = client.get("/admin/audit.csv?event=login.failure")
    assert export.status_code == 200
    assert len(list(csv.DictReader(io.StringIO(export.get_data(as_text=True))))) == 130
    result = runner.invoke(args=["audit", "export", "--event", "login.failure",
                                 "--format", "jsonl"])
    assert result.exit_code == 0, result.output
    assert len(result.output.splitlines()) == 130
