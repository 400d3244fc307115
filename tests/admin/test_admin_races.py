"""An admin demoted or disabled by another admin while their own request is in flight.

The request passed ``admin_required`` before the other admin's change committed; deletion
already asked again under the admins' lock whether the actor still is an active admin, the
other user-management actions acted on the stale permission (a demoted admin's queued
request could promote the account back).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from bastion.admin import services as admin
from bastion.extensions import db
from bastion.models import AuditEvent, User, utcnow
from tests.factories import UserFactory
from tests.support.races import delete_user_elsewhere, elsewhere
from tests.support.roles import client_for, post


def _elsewhere(app: Flask, change: Callable[[User], None], user_id: int) -> None:
    """Commit ``change`` to the user from another request's session (another worker)."""

    def run() -> None:
        user = db.session.get(User, user_id)
        assert user is not None
        change(user)

    elsewhere(app, run)


def _demote(user: User) -> None:
    admin.set_role(None, user, "editor")


def _disable(user: User) -> None:
    user.disabled_at = utcnow()


def _fresh(user_id: int) -> User:
    db.session.expire_all()
    user = db.session.get(User, user_id)
    assert user is not None
    return user


def _events(name: str) -> list[AuditEvent]:
    return list(db.session.scalars(select(AuditEvent).where(AuditEvent.event == name)))


ACTIONS: dict[str, Callable[[User, User], Any]] = {
    "promote": lambda actor, user: admin.set_role(actor, user, "admin"),
    "demote": lambda actor, user: admin.set_role(actor, user, "viewer"),
    "disable": lambda actor, user: admin.set_disabled(actor, user, True),
    "enable": lambda actor, user: admin.set_disabled(actor, user, False),
    "sign-out": lambda actor, user: admin.sign_out_everywhere(actor, user),
    "2fa-reset": lambda actor, user: admin.reset_two_factor(
        actor, user, confirmation=user.username, reason="video call, passport checked"
    ),
}


def _target_for(action: str) -> User:
    if action == "demote":
        return UserFactory(role_name="admin")
    if action == "enable":
        return UserFactory(disabled_at=utcnow())
    return UserFactory(role_name="editor", two_factor=True)


@pytest.mark.asvs("V8.2.1", "V2.3.3")
@pytest.mark.parametrize("lost", [_demote, _disable], ids=["demoted", "disabled"])
@pytest.mark.parametrize("action", list(ACTIONS))
def test_an_admin_who_lost_the_role_meanwhile_changes_no_one(
    app: Flask, action: str, lost: Callable[[User], None]
) -> None:
    boss = UserFactory(role_name="admin")
    UserFactory(role_name="admin")  # a third admin: the last-admin rule does not decide
    UserFactory(role_name="admin")
    target = _target_for(action)
    before = (target.role_name, target.disabled_at, target.totp_secret)
    stale_boss = db.session.get(User, boss.id)  # as the request loaded it
    assert stale_boss is not None and stale_boss.is_admin
    _elsewhere(app, lost, boss.id)

    loaded = db.session.get(User, target.id)
    assert loaded is not None
    with pytest.raises(admin.AdminError, match="can no longer manage users"):
        ACTIONS[action](stale_boss, loaded)

    after = _fresh(target.id)
    assert (after.role_name, after.disabled_at, after.totp_secret) == before
    names = ("user.role_changed", "user.disabled", "user.enabled",
             "user.signed_out_everywhere", "user.2fa_reset")
    assert [e.event for e in _events_by_actor(boss.id, names)] == []


def _events_by_actor(actor_id: int, names: tuple[str, ...]) -> list[AuditEvent]:
    return list(db.session.scalars(
        select(AuditEvent).where(AuditEvent.actor_id == actor_id, AuditEvent.event.in_(names))
    ))


@contextmanager
def _demoted_during_lookup(
    app: Flask, monkeypatch: pytest.MonkeyPatch, admin_id: int
) -> Iterator[None]:
    """Requests made inside: another admin's demotion of ``admin_id`` commits after the
    request passed ``admin_required``, while the view looks its target up."""
    get_user = admin.get_user

    def demoted_meanwhile(user_id: int) -> User | None:
        _elsewhere(app, _demote, admin_id)
        return get_user(user_id)

    monkeypatch.setattr(admin, "get_user", demoted_meanwhile)
    try:
        yield
    finally:
        monkeypatch.setattr(admin, "get_user", get_user)


@pytest.mark.asvs("V8.2.1")
def test_a_demoted_admins_request_in_flight_cannot_promote_them_back(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the page: the other admin's demotion commits after this request passed
    ``admin_required`` (here: while the view looks the target up)."""
    boss = UserFactory(role_name="admin")
    UserFactory(role_name="admin")
    client = client_for(app, boss)
    with _demoted_during_lookup(app, monkeypatch, boss.id):
        resp = post(client, f"/admin/users/{boss.id}/role",
                    {"role": "admin", "username": boss.username})

    assert resp.status_code == 302
    assert _fresh(boss.id).role_name == "editor"
    assert [e.details["to"] for e in _events("user.role_changed")] == ["editor"]
    # The refusal is told, once the former admin can read anything of the area at all.
    assert client.get("/admin/users").status_code == 403



@pytest.mark.asvs("V16.5.1", "V16.5.3")
@pytest.mark.parametrize(
    ("action", "data"),
    [("role", {"role": "viewer", "username": "victim"}), ("disable", {"username": "victim"}),
     ("enable", {"username": "victim"}), ("sign-out", {"username": "victim"}),
     ("2fa-reset", {"confirm": "victim", "reason": "video call, passport checked"})],
)
def test_an_account_deleted_by_another_admin_meanwhile_is_said_not_a_500(
    app: Flask, monkeypatch: pytest.MonkeyPatch, action: str, data: dict[str, str]
) -> None:
    """Two admins at once: one deletes the account while the other's change of it is past
    the page's lookup. The re-read under the lock (or the update) failed with a 500."""
    target_id = UserFactory(username="victim", role_name="editor", two_factor=True).id
    client = client_for(app, UserFactory(role_name="admin"))
    get_user = admin.get_user

    def deleted_right_after(user_id: int) -> User | None:
        user = get_user(user_id)
        delete_user_elsewhere(app, user_id)
        return user

    monkeypatch.setattr(admin, "get_user", deleted_right_after)
    resp = post(client, f"/admin/users/{target_id}/{action}", data)
    monkeypatch.setattr(admin, "get_user", get_user)

    if action == "2fa-reset":
        assert resp.status_code == 404
        assert "it was deleted meanwhile" in resp.get_data(as_text=True)
    else:
        assert resp.status_code == 302
        page = client.get(resp.headers["Location"]).get_data(as_text=True)
        assert "it was deleted meanwhile" in page
    assert _events_about(target_id) == []


def _events_about(target_id: int) -> list[str]:
    return [e.event for e in db.session.scalars(
        select(AuditEvent).where(AuditEvent.target_user_id == target_id)
    )]


SIGNED_OUT_ACTIONS = {
    "role": {"role": "admin", "username": "target"},
    "disable": {"username": "target"},
    "sign-out": {"username": "target"},
    "2fa-reset": {"confirm": "target", "reason": "video call, passport checked"},
    "delete": {"confirm": "target"},
}


@pytest.mark.asvs("V7.4.5", "V2.3.3")
@pytest.mark.parametrize("action", list(SIGNED_OUT_ACTIONS))
def test_a_request_in_flight_when_its_admin_was_signed_out_changes_no_one(
    app: Flask, monkeypatch: pytest.MonkeyPatch, action: str
) -> None:
    """Another admin ends this admin's sessions (a stolen cookie: "sign out everywhere")
    after the request passed its sign-in check. Queued on the admins' lock behind that
    very sign-out, it went on to change the account as soon as the sign-out committed."""
    boss = UserFactory(role_name="admin")
    UserFactory(role_name="admin")
    target = UserFactory(username="target", role_name="editor", two_factor=True)
    before = (target.role_name, target.disabled_at, target.totp_secret)
    client = client_for(app, boss)
    get_user = admin.get_user

    def signed_out_meanwhile(user_id: int) -> User | None:
        _elsewhere(app, lambda user: admin.sign_out_everywhere(None, user), boss.id)
        return get_user(user_id)

    monkeypatch.setattr(admin, "get_user", signed_out_meanwhile)
    resp = post(client, f"/admin/users/{target.id}/{action}", SIGNED_OUT_ACTIONS[action])
    monkeypatch.setattr(admin, "get_user", get_user)

    after = _fresh(target.id)
    assert (after.role_name, after.disabled_at, after.totp_secret) == before
    assert _events_about(target.id) == []
    said = resp.get_data(as_text=True)  # the form pages say it at once (422, 403)
    # The browser is signed out: whatever it asks next leads to the sign-in page, which
    # says it for the actions that come back to the users list.
    sign_in = client.get("/admin/users").headers["Location"]
    assert sign_in.startswith("/auth/login")
    if resp.status_code == 302:
        said = client.get(sign_in).get_data(as_text=True)
    assert re.search(r"You were signed out [^<]*nothing was (changed|deleted)", said)


DEMOTED_ACTIONS = {**SIGNED_OUT_ACTIONS, "enable": {"username": "target"}}


@pytest.mark.asvs("V16.3.2", "V8.2.1")
@pytest.mark.parametrize("action", list(DEMOTED_ACTIONS))
def test_an_admin_demoted_meanwhile_leaves_the_refusal_in_the_audit_trail(
    app: Flask, monkeypatch: pytest.MonkeyPatch, action: str
) -> None:
    """The refusal under the admins' lock is an authorization failure like any other: it
    left no row, so a stolen admin cookie's requests refused there went unrecorded."""
    boss = UserFactory(role_name="admin")
    UserFactory(role_name="admin")
    target = UserFactory(username="target", role_name="editor", two_factor=True,
                         disabled_at=utcnow() if action == "enable" else None)
    client = client_for(app, boss)
    with _demoted_during_lookup(app, monkeypatch, boss.id):
        post(client, f"/admin/users/{target.id}/{action}", DEMOTED_ACTIONS[action])

    assert _events_about(target.id) == []  # nothing was done to the account
    (denied,) = _events("authz.denied")
    assert denied.actor_id == boss.id
    assert denied.details["what"] == f"{action} user {target.id}"
