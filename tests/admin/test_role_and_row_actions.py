"""What a demotion takes away at once, row forms that name their account, refusals no page
leads to left in the audit trail, and the admin's own row in the users list."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from sqlalchemy import select

from bastion.admin import deletion
from bastion.admin import services as admin
from bastion.api import pats
from bastion.extensions import db
from bastion.models import ApiToken, AuditEvent
from tests.factories import UserFactory
from tests.support.roles import client_for, post, stored_user


def _events(name: str) -> list[AuditEvent]:
    db.session.expire_all()
    return list(db.session.scalars(select(AuditEvent).where(AuditEvent.event == name)))


def _revoked(token_id: int) -> bool:
    db.session.expire_all()
    record = db.session.get(ApiToken, token_id)
    assert record is not None
    return record.revoked_at is not None


# ------------------------------------------------------------- powers that outlast ---
@pytest.mark.asvs("V8.2.1")
def test_a_demotion_revokes_the_tokens_whose_scopes_the_new_role_cannot_grant(
    app: Flask,
) -> None:
    """Filtered by the role on each use, an ``admin`` token lay dormant after a demotion and
    came back whole with the next promotion."""
    boss = UserFactory(role_name="admin")
    former = UserFactory(role_name="admin")
    with app.test_request_context():
        strong = pats.create(former, name="ops", scopes=["admin", "articles:read"])
        writer = pats.create(former, name="ci", scopes=["articles:write"])
        reader = pats.create(former, name="feed", scopes=["articles:read"])

    resp = post(client_for(app, boss), f"/admin/users/{former.id}/role",
                {"role": "editor", "username": former.username})

    assert resp.status_code == 302
    assert _revoked(strong.record.id)
    assert not _revoked(writer.record.id) and not _revoked(reader.record.id)
    (event,) = _events("user.role_changed")
    assert event.details == {"from": "admin", "to": "editor", "tokens_revoked": 1}
    # Promoted again, the old admin token stays dead.
    admin.set_role(boss, stored_user(former.id), "admin")
    assert pats.authenticate(strong.secret) is None
    # Down to viewer: the articles:write token goes too, the read-only one stays.
    admin.set_role(None, stored_user(former.id), "viewer")
    assert _revoked(writer.record.id) and not _revoked(reader.record.id)
    assert pats.authenticate(reader.secret) is not None


def test_a_console_demotion_revokes_them_too_and_a_promotion_keeps_tokens(app: Flask) -> None:
    UserFactory(role_name="admin")
    editor = UserFactory(role_name="editor", username="writer")
    with app.test_request_context():
        token = pats.create(editor, name="ci", scopes=["articles:write"])
    result = app.test_cli_runner().invoke(args=["users", "set-role", "writer", "viewer"])
    assert result.exit_code == 0, result.output
    assert _revoked(token.record.id)
    (event,) = _events("user.role_changed")
    assert event.details["tokens_revoked"] == 1
    assert event.details["via"] == "cli"


@pytest.mark.asvs("V8.2.1")
def test_a_demoted_admin_loses_a_display_name_only_admins_may_carry(app: Flask) -> None:
    boss = UserFactory(role_name="admin")
    former = UserFactory(role_name="admin", username="ops7", display_name="Site Admin")
    kept = UserFactory(role_name="admin", display_name="Ada Lovelace")
    client = client_for(app, boss)
    assert "Site Admin" in app.test_client().get("/u/ops7").get_data(as_text=True)

    post(client, f"/admin/users/{former.id}/role", {"role": "editor", "username": "ops7"})
    post(client, f"/admin/users/{kept.id}/role", {"role": "viewer", "username": kept.username})

    assert stored_user(former.id).display_name == ""
    assert stored_user(kept.id).display_name == "Ada Lovelace"
    demoted, other = sorted(_events("user.role_changed"), key=lambda e: e.id)
    assert demoted.details == {"from": "admin", "to": "editor", "tokens_revoked": 0,
                               "display_name_cleared": "Site Admin"}
    assert "display_name_cleared" not in other.details
    # The profile shows what it shows with no display name: the username.
    page = app.test_client().get("/u/ops7").get_data(as_text=True)
    assert "Site Admin" not in page and "ops7" in page


# ----------------------------------------------------------------- stale row forms ---
ROW_ACTIONS = [("role", {"role": "editor"}), ("disable", {}), ("enable", {}), ("sign-out", {})]


@pytest.mark.asvs("V8.2.2")
@pytest.mark.parametrize(("action", "data"), ROW_ACTIONS, ids=[a for a, _ in ROW_ACTIONS])
def test_a_row_form_naming_another_account_is_refused_and_changes_nothing(
    app: Flask, action: str, data: dict[str, str]
) -> None:
    """On SQLite a deleted account's id goes to the next account registered: a users list
    left open acted, by id alone, on that other person."""
    boss = UserFactory(role_name="admin")
    bob = UserFactory(username="bob", role_name="viewer")
    if action == "enable":
        admin.set_disabled(boss, bob, True)
    client = client_for(app, boss)
    client_for(app, bob)
    before = stored_user(bob.id)
    state = (before.role_name, before.disabled_at)
    events = len(db.session.scalars(select(AuditEvent)).all())

    resp = post(client, f"/admin/users/{bob.id}/{action}", {**data, "username": "alice"})

    assert resp.status_code == 409
    assert (f"This page was for alice, but user {bob.id} is now another account; nothing was "
            "changed.") in resp.get_data(as_text=True)
    after = stored_user(bob.id)
    assert (after.role_name, after.disabled_at) == state
    assert len(db.session.scalars(select(AuditEvent)).all()) == events
    # A form without the name at all (not from the users list) is refused as well.
    resp = post(client, f"/admin/users/{bob.id}/{action}", data)
    assert resp.status_code == 422
    assert "This form is out of date" in resp.get_data(as_text=True)
    assert (stored_user(bob.id).role_name, stored_user(bob.id).disabled_at) == state


_ROW_FORM = re.compile(
    r'<form method="post" action="/admin/users/(\d+)/disable"[^>]*>\s*'
    r'<input[^>]*name="csrf_token"[^>]*><input type="hidden" name="username" value="([^"]+)">'
)


@pytest.mark.asvs("V8.2.2")
def test_a_users_list_left_open_does_not_act_on_whoever_took_the_id(app: Flask) -> None:
    boss = UserFactory(role_name="admin", username="boss")
    alice = UserFactory(username="alice", role_name="viewer")
    client = client_for(app, boss)
    page = client.get("/admin/users").get_data(as_text=True)
    forms = dict(_ROW_FORM.findall(page))
    assert forms[str(alice.id)] == "alice"
    alice_id = alice.id
    deletion.delete_user(None, alice, confirmation="alice")
    bob = UserFactory(username="bob", role_name="viewer")
    sqlite = app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite")
    assert (bob.id == alice_id) == sqlite  # PostgreSQL's sequences never give it again

    resp = post(client, f"/admin/users/{alice_id}/disable", {"username": "alice"})

    assert resp.status_code == (409 if sqlite else 404)
    assert stored_user(bob.id).is_active


# ------------------------------------------------------- refusals no page leads to ---
@pytest.mark.asvs("V16.3.2")
def test_deleting_oneself_in_the_admin_area_is_audited_when_posted(app: Flask) -> None:
    boss = UserFactory(role_name="admin", username="boss")
    UserFactory(role_name="admin")
    client = client_for(app, boss)
    assert client.get(f"/admin/users/{boss.id}/delete").status_code == 200
    assert _events("authz.denied") == []  # looking is not trying
    resp = post(client, f"/admin/users/{boss.id}/delete", {"confirm": "boss"})
    assert resp.status_code == 403
    assert stored_user(boss.id).is_active
    (denied,) = _events("authz.denied")
    assert denied.actor_id == boss.id
    assert denied.details == {"hidden": False, "what": f"delete user {boss.id}"}


# ---------------------------------------------------------------- one's own row ---
def _row(page: str, username: str) -> str:
    match = re.search(rf'<tr>\s*<td><a href="/u/{username}">.*?</tr>', page, re.S)
    assert match is not None, username
    return match.group(0)


def test_the_admins_own_row_offers_no_action_the_server_refuses(app: Flask) -> None:
    boss = UserFactory(role_name="admin", username="boss", two_factor=True)
    UserFactory(role_name="editor", username="other", two_factor=True)
    page = client_for(app, boss).get("/admin/users").get_data(as_text=True)
    own, other = _row(page, "boss"), _row(page, "other")
    for label in ("Disable {}", "Delete {}", "Reset 2FA of {}"):
        assert f'aria-label="{label.format("boss")}"' not in own
        assert f'aria-label="{label.format("other")}"' in other
    assert 'name="confirm_self"' in own and 'name="confirm_self"' not in other
    assert 'aria-label="Sign out everywhere: boss"' in own


def test_demoting_oneself_asks_for_confirmation(app: Flask) -> None:
    boss = UserFactory(role_name="admin", username="boss")
    UserFactory(role_name="admin")
    client = client_for(app, boss)

    resp = post(client, f"/admin/users/{boss.id}/role", {"role": "editor", "username": "boss"})

    assert resp.status_code == 302
    assert stored_user(boss.id).role_name == "admin"
    assert "Yes, change my own role" in client.get("/admin/users").get_data(as_text=True)
    assert _events("user.role_changed") == []
    resp = post(client, f"/admin/users/{boss.id}/role",
                {"role": "editor", "username": "boss", "confirm_self": "y"})
    assert resp.status_code == 302
    assert stored_user(boss.id).role_name == "editor"
