"""The audit page names each id by the account that held it when the event happened:
live, deleted (by the name its ``user.deleted`` recorded), or unknown; never a later one."""

from __future__ import annotations

import html
import json
import re
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask
from sqlalchemy import delete, event

from bastion.admin import deletion
from bastion.admin.audit_log import CSV_COLUMNS, match_user
from bastion.extensions import db
from bastion.models import AuditEvent, User, utcnow
from tests.factories import UserFactory
from tests.support.roles import client_for

ROW = re.compile(r"<tr>(.*?)</tr>", re.S)
CELL = re.compile(r"<td[^>]*>(.*?)</td>", re.S)
TAG = re.compile(r"<[^>]+>")


def _event(name: str, *, days_ago: float = 0, **fields: object) -> AuditEvent:
    row = AuditEvent(event=name, created_at=utcnow() - timedelta(days=days_ago), **fields)
    db.session.add(row)
    db.session.commit()
    return row


def _people(page: str) -> list[tuple[str, str, str]]:
    """Each row's event, actor and target as the admin reads them, newest first."""
    rows = []
    for row in ROW.findall(page)[1:]:  # after the header row
        cells = [html.unescape(TAG.sub("", cell)).strip() for cell in CELL.findall(row)]
        rows.append((cells[1], cells[2], cells[3]))
    return rows


def _audit_page(app: Flask, admin: User, query: str = "") -> list[tuple[str, str, str]]:
    resp = client_for(app, admin).get(f"/admin/audit?{query}")
    assert resp.status_code == 200
    return _people(resp.get_data(as_text=True))


@pytest.mark.asvs("V16.2.1")
def test_a_deleted_account_is_named_by_its_deletion_event(app: Flask) -> None:
    """Once deleted, an account's rows read "unknown": who it was had to be dug out of the
    details of its ``user.deleted`` row."""
    boss = UserFactory(username="boss", role_name="admin")
    alice = UserFactory(username="alice")
    alice_id = alice.id
    _event("login.success", actor_id=alice_id)
    _event("user.role_changed", actor_id=boss.id, target_user_id=alice_id)

    deletion.delete_user(boss, alice, confirmation="alice")

    assert _audit_page(app, boss) == [
        ("user.deleted", f"boss #{boss.id}", f"alice (deleted) #{alice_id}"),
        ("user.role_changed", f"boss #{boss.id}", f"alice (deleted) #{alice_id}"),
        ("login.success", f"alice (deleted) #{alice_id}", "—"),
    ]


@pytest.mark.asvs("V16.2.1")
def test_a_reused_id_names_each_event_by_the_account_that_held_it(app: Flask) -> None:
    """SQLite gives the highest id again once its account is deleted: the new account's
    name must not be put on what the earlier holders of its id did."""
    boss = UserFactory(username="boss", role_name="admin", created_at=utcnow() - timedelta(days=30))
    held = UserFactory(username="placeholder").id  # an id the database has handed out
    db.session.execute(delete(User).where(User.id == held))
    db.session.commit()
    # carol held the id until 15 days ago, alice until 8 days ago; then an account that
    # left no ``user.deleted`` (purged unconfirmed); bob holds it since 4 days ago.
    _event("login.success", days_ago=20, actor_id=held)
    _event("user.deleted", days_ago=15, actor_id=boss.id, target_user_id=held,
           details={"username": "carol"})
    _event("login.success", days_ago=10, actor_id=held)
    _event("user.deleted", days_ago=8, actor_id=boss.id, target_user_id=held,
           details={"username": "alice"})
    _event("user.registered", days_ago=6, target_user_id=held)
    UserFactory(id=held, username="bob", created_at=utcnow() - timedelta(days=4))
    _event("login.success", days_ago=2, actor_id=held)

    assert _audit_page(app, boss, f"user={held}") == [
        ("login.success", f"bob #{held}", "—"),
        ("user.registered", "—", f"unknown #{held}"),
        ("user.deleted", f"boss #{boss.id}", f"alice (deleted) #{held}"),
        ("login.success", f"alice (deleted) #{held}", "—"),
        ("user.deleted", f"boss #{boss.id}", f"carol (deleted) #{held}"),
        ("login.success", f"carol (deleted) #{held}", "—"),
    ]


@pytest.mark.asvs("V16.4.1")
def test_a_deleted_name_shows_invisible_characters_as_escapes(app: Flask) -> None:
    """The name comes from the trail's details, so it is shown as the details are: a bidi
    override in it must not make the row read as something else."""
    boss = UserFactory(username="boss", role_name="admin")
    _event("user.deleted", actor_id=boss.id, target_user_id=10_000,
           details={"username": "mallory\u202egnp.exe"})
    page = client_for(app, boss).get("/admin/audit").get_data(as_text=True)
    assert "\u202e" not in page
    assert "mallory\\u202egnp.exe (deleted)" in page


def test_ids_no_account_ever_held_stay_unknown(app: Flask) -> None:
    boss = UserFactory(username="boss", role_name="admin")
    _event("login.failure", target_user_id=10_001, details={"username": "ghost"})
    assert _audit_page(app, boss) == [("login.failure", "—", "unknown #10001")]


@pytest.mark.asvs("V16.2.1")
def test_the_filter_finds_a_deleted_account_by_its_name(app: Flask) -> None:
    """Investigations start from a name; once the account is gone only the ``user.deleted``
    row remembers it, and the filter used to match live usernames alone."""
    boss = UserFactory(username="boss", role_name="admin")
    alice = UserFactory(username="alice")
    alice_id = alice.id
    _event("login.success", days_ago=2, actor_id=alice_id)
    _event("login.success", days_ago=1, actor_id=boss.id)
    deletion.delete_user(boss, alice, confirmation="alice")

    assert _audit_page(app, boss, "user=ALICE") == [
        ("user.deleted", f"boss #{boss.id}", f"alice (deleted) #{alice_id}"),
        ("login.success", f"alice (deleted) #{alice_id}", "—"),
    ]
    # A new account may take the name: the filter then shows both, each named as it was.
    newcomer = UserFactory(username="alice")
    _event("login.success", actor_id=newcomer.id)
    assert [row[1] for row in _audit_page(app, boss, "user=alice")] == [
        f"alice #{newcomer.id}", f"boss #{boss.id}", f"alice (deleted) #{alice_id}",
    ]
    assert _audit_page(app, boss, "user=carol") == []


@pytest.mark.asvs("V16.2.1")
def test_a_deleted_name_covers_only_the_time_its_account_held_the_id(app: Flask) -> None:
    """SQLite hands the id out again: the rows of its earlier and later holders are not
    the named account's."""
    boss = UserFactory(username="boss", role_name="admin", created_at=utcnow() - timedelta(days=30))
    held = UserFactory(username="placeholder").id
    db.session.execute(delete(User).where(User.id == held))
    db.session.commit()
    _event("login.success", days_ago=20, actor_id=held)  # carol
    _event("user.deleted", days_ago=15, actor_id=boss.id, target_user_id=held,
           details={"username": "carol"})
    _event("login.failure", days_ago=10, target_user_id=held)  # alice
    _event("user.deleted", days_ago=8, actor_id=boss.id, target_user_id=held,
           details={"username": "alice"})
    UserFactory(id=held, username="bob", created_at=utcnow() - timedelta(days=4))
    _event("login.success", days_ago=2, actor_id=held)  # bob

    assert _audit_page(app, boss, "user=alice") == [
        ("user.deleted", f"boss #{boss.id}", f"alice (deleted) #{held}"),
        ("login.failure", "—", f"alice (deleted) #{held}"),
    ]
    assert _audit_page(app, boss, "user=carol") == [
        ("user.deleted", f"boss #{boss.id}", f"carol (deleted) #{held}"),
        ("login.success", f"carol (deleted) #{held}", "—"),
    ]
    # The live holder's rows start after the id's last deletion; the id itself covers all.
    assert _audit_page(app, boss, "user=bob") == [("login.success", f"bob #{held}", "—")]
    assert len(_audit_page(app, boss, f"user={held}")) == 5


def test_the_export_command_filters_by_a_deleted_name_too(app: Flask, runner: Any) -> None:
    boss = UserFactory(username="boss", role_name="admin")
    alice = UserFactory(username="alice")
    alice_id = alice.id
    _event("login.success", days_ago=1, actor_id=alice_id)
    _event("login.success", days_ago=1, actor_id=boss.id)
    deletion.delete_user(boss, alice, confirmation="alice")

    result = runner.invoke(args=["audit", "export", "--user", "alice", "--format", "jsonl"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [(r["event"], r["actor_id"], r["target_user_id"]) for r in rows] == [
        ("login.success", alice_id, None), ("user.deleted", boss.id, alice_id),
    ]
    assert runner.invoke(args=["audit", "export", "--user", "nobody"]).stdout.splitlines() == [
        ",".join(CSV_COLUMNS)
    ]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_an_export_for_a_name_no_account_ever_had_says_so_on_standard_error(
    app: Flask, runner: Any, fmt: str
) -> None:
    """A typo in ``--user`` wrote the CSV header alone with status 0: it read as "this
    account has no events". The status and standard output stay as they were (scripts read
    them); one line on standard error says the name matched no one."""
    boss = UserFactory(username="boss", role_name="admin")
    alice = UserFactory(username="alice")
    _event("login.success", days_ago=1, actor_id=alice.id)
    deletion.delete_user(boss, alice, confirmation="alice")
    empty = runner.invoke(args=["audit", "export", "--user", "alice", "--since", "9999-01-01",
                                "--format", fmt])

    typo = runner.invoke(args=["audit", "export", "--user", " Alcie ", "--format", fmt])

    assert typo.exit_code == 0, typo.output
    assert typo.stdout == empty.stdout  # the header alone (CSV), or nothing (JSON Lines)
    assert typo.stderr == (
        "No account, present or deleted, was ever named 'Alcie'; nothing matched.\n")
    # A deleted account's name still names it, events or none: no note.
    assert empty.exit_code == 0
    assert empty.stderr == ""
    deleted = runner.invoke(args=["audit", "export", "--user", "alice", "--format", fmt])
    assert deleted.stderr == ""
    assert "login.success" in deleted.stdout


def test_an_export_for_an_id_notes_only_an_id_no_account_ever_had(
    app: Flask, runner: Any
) -> None:
    boss = UserFactory(username="boss", role_name="admin")  # no events of its own
    _event("user.registered", target_user_id=10_002)  # purged unconfirmed: no user.deleted

    def note(user: str) -> str:
        result = runner.invoke(args=["audit", "export", "--user", user])
        assert result.exit_code == 0, result.output
        return result.stderr

    assert note(str(boss.id)) == ""
    assert note("10002") == ""
    assert note("10003") == (
        "No account, present or deleted, was ever named '10003' or has that id; "
        "nothing matched.\n")


NOTE = re.compile(r'<p class="hint" id="user-note">(.*?)</p>', re.S)
USER_INPUT = re.compile(r"<input[^>]*\bid=\"user\"[^>]*>")


def _user_note(app: Flask, admin: User, query: str) -> str | None:
    """The note by the User field (unescaped), None without one; it must be tied to the
    field, as hints and errors are, for a screen reader to read it with the field."""
    resp = client_for(app, admin).get(f"/admin/audit?{query}")
    assert resp.status_code == 200
    page = resp.get_data(as_text=True)
    field = USER_INPUT.search(page)
    assert field is not None
    note = NOTE.search(page)
    tied = 'aria-describedby="user-note"' in field.group(0)
    assert tied == (note is not None), field.group(0)
    return html.unescape(note.group(1)) if note else None


@pytest.mark.asvs("V16.2.1")
def test_the_page_says_when_the_user_filter_names_no_account_ever(app: Flask) -> None:
    """A typo in the User filter showed "No events match these filters.", as for an account
    without events: it read as "nothing happened". A name or id no account, present or
    deleted, ever had is now said to be one, by the field."""
    boss = UserFactory(username="boss", role_name="admin")
    alice = UserFactory(username="alice")
    _event("login.success", days_ago=1, actor_id=alice.id)
    deletion.delete_user(boss, alice, confirmation="alice")
    UserFactory(username="quiet")  # an account without events
    _event("user.registered", target_user_id=10_002)  # purged unconfirmed: no user.deleted

    assert _user_note(app, boss, "user=+Alcie+") == (
        "No account, present or deleted, was ever named \u201cAlcie\u201d, so no events "
        "match. Check the spelling?")
    assert _user_note(app, boss, "user=10003") == (
        "No account, present or deleted, was ever named \u201c10003\u201d or has that id, so "
        "no events match. Check the spelling?")
    page = client_for(app, boss).get("/admin/audit?user=Alcie").get_data(as_text=True)
    assert "No events match these filters." in page
    # Accounts named rightly: no note, events or none, deleted or not.
    for query in ("user=alice", "user=alice&since=9999-01-01", "user=quiet", "user=boss",
                  f"user={boss.id}", "user=10002", "user=", "user=+", ""):
        assert _user_note(app, boss, query) is None, query


def test_the_unknown_user_note_shows_invisible_characters_as_escapes(app: Flask) -> None:
    """A bidi override in the filter would make the note read otherwise than what was sent."""
    boss = UserFactory(username="boss", role_name="admin")
    assert _user_note(app, boss, "user=%E2%80%AEecila") == (
        "No account, present or deleted, was ever named \u201c\\u202eecila\u201d, so no "
        "events match. Check the spelling?")


@pytest.mark.asvs("V1.2.1")
def test_the_unknown_user_note_escapes_the_name(app: Flask) -> None:
    boss = UserFactory(username="boss", role_name="admin")
    attack = '"><script>alert(1)</script><img src=x onerror=alert(2)>'
    resp = client_for(app, boss).get("/admin/audit", query_string={"user": attack})

    page = resp.get_data(as_text=True)
    assert resp.status_code == 200
    assert "<script>alert(1)" not in page and "<img src=x" not in page
    assert (
        "was ever named \u201c&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x "
        "onerror=alert(2)&gt;\u201d" in page
    )
    assert _user_note(app, boss, urlencode({"user": attack})) == (
        f"No account, present or deleted, was ever named \u201c{attack}\u201d, so no events "
        "match. Check the spelling?")


def test_the_page_resolves_the_user_filter_once(app: Flask) -> None:
    """The note comes from the filter the query used: the page searches the accounts and
    the trail's deletions for the name as often as one match_user does, not twice."""
    boss = UserFactory(username="boss", role_name="admin")
    client = client_for(app, boss)
    client.get("/admin/audit")  # sign-in and first-request work out of the count
    name = "alcie-" + "q" * 12
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if name in repr(parameters):
            statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        match_user(name)
        once = len(statements)
        statements.clear()
        assert client.get(f"/admin/audit?user={name}").status_code == 200
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    assert once > 0
    assert len(statements) == once, statements
