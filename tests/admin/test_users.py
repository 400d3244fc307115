"""Admin user management: roles, disabling, signing out everywhere; audited, last admin kept."""

from __future__ import annotations

from datetime import timedelta

import pytest
from flask import Flask

from bastion.admin import services as admin
from bastion.extensions import db
from bastion.models import AuditEvent, RefreshToken, User, UserSession, utcnow
from tests.factories import UserFactory
from tests.support.roles import age_reauthentication, client_for, post, stored_user


def _events(name: str) -> list[AuditEvent]:
    return list(db.session.scalars(db.select(AuditEvent).where(AuditEvent.event == name)))


def _named(user: User, **fields: str) -> dict[str, str]:
    """A row form's fields: the account named by its username, as the users list does."""
    return {"username": user.username, **fields}


@pytest.mark.asvs("V8.2.1", "V16.3.3", "V16.2.1")
def test_admin_changes_a_role_and_it_is_audited(app: Flask) -> None:
    boss = UserFactory(role_name="admin")
    someone = UserFactory()
    client = client_for(app, boss)
    resp = post(client, f"/admin/users/{someone.id}/role", _named(someone, role="editor"))
    assert resp.status_code == 302
    assert stored_user(someone.id).role_name == "editor"
    (event,) = _events("user.role_changed")
    assert (event.actor_id, event.target_user_id) == (boss.id, someone.id)
    assert event.details == {"from": "viewer", "to": "editor"}
    assert f"{someone.username} is now an editor." in client.get("/admin/users").get_data(as_text=True)


@pytest.mark.asvs("V2.2.1")
@pytest.mark.parametrize("role", ["superuser", "", "Admin"])
def test_unknown_role_is_refused_and_audited(app: Flask, role: str) -> None:
    # The form offers only the roles: another value was typed by hand, and is audited as a
    # refused permission (it left no trace).
    someone = UserFactory()
    boss = UserFactory(role_name="admin")
    client = client_for(app, boss)
    resp = post(client, f"/admin/users/{someone.id}/role", _named(someone, role=role))
    assert resp.status_code == 302
    assert "Choose one of: viewer, editor, admin." in client.get("/admin/users").get_data(
        as_text=True
    )
    assert stored_user(someone.id).role_name == "viewer"
    assert not _events("user.role_changed")
    (denied,) = _events("authz.denied")
    assert denied.actor_id == boss.id
    assert denied.details == {"hidden": False, "what": f"role user {someone.id}"}


@pytest.mark.asvs("V8.2.1")
def test_last_active_admin_cannot_be_demoted_or_disabled(app: Flask) -> None:
    boss = UserFactory(role_name="admin")
    UserFactory(role_name="admin", disabled_at=utcnow())  # a disabled admin does not count
    client = client_for(app, boss)
    post(client, f"/admin/users/{boss.id}/role", _named(boss, role="viewer", confirm_self="y"))
    assert stored_user(boss.id).role_name == "admin"
    page = client.get("/admin/users").get_data(as_text=True)
    assert "is the last active admin and cannot be demoted" in page
    assert not _events("authz.denied")  # the page offers this: a rule, not a forged request
    post(client, f"/admin/users/{boss.id}/disable", _named(boss))
    assert stored_user(boss.id).is_active
    with pytest.raises(admin.AdminError, match="last active admin"):
        admin.set_disabled(UserFactory(role_name="viewer"), boss, True)
    with pytest.raises(admin.AdminError, match="last active admin"):
        admin.set_role(boss, boss, "editor")


def test_an_admin_can_step_down_when_another_remains(app: Flask) -> None:
    boss, other = UserFactory(role_name="admin"), UserFactory(role_name="admin")
    admin.set_role(other, boss, "editor")
    assert stored_user(boss.id).role_name == "editor"


@pytest.mark.asvs("V7.4.2", "V7.4.5", "V16.3.3")
def test_disabling_ends_every_session_and_refresh_token(app: Flask) -> None:
    victim = UserFactory(role_name="editor")
    victim_client = client_for(app, victim)
    db.session.add(
        RefreshToken(
            jti="j1", family_id="f1", user_id=victim.id, expires_at=utcnow() + timedelta(days=1)
        )
    )
    db.session.commit()
    assert victim_client.get("/articles/new").status_code == 200
    client = client_for(app, UserFactory(role_name="admin"))
    assert post(client, f"/admin/users/{victim.id}/disable", _named(victim)).status_code == 302
    assert not stored_user(victim.id).is_active
    resp = victim_client.get("/articles/new")
    assert resp.status_code == 302
    assert resp.headers["Location"].startswith("/auth/login")
    assert all(
        s.revoked_at
        for s in db.session.scalars(db.select(UserSession).where(UserSession.user_id == victim.id))
    )
    assert db.session.get(RefreshToken, "j1").revoked_at is not None
    assert _events("user.disabled")[0].details == {"sessions_ended": 1}
    # Re-enabling restores sign-in, audited too.
    assert post(client, f"/admin/users/{victim.id}/enable", _named(victim)).status_code == 302
    assert stored_user(victim.id).is_active
    assert _events("user.enabled")


@pytest.mark.asvs("V7.4.5")
def test_sign_out_everywhere(app: Flask) -> None:
    victim = UserFactory()
    first, second = client_for(app, victim), client_for(app, victim)
    client = client_for(app, UserFactory(role_name="admin"))
    assert post(client, f"/admin/users/{victim.id}/sign-out", _named(victim)).status_code == 302
    for c in (first, second):
        assert c.get("/comments/1/edit").headers.get("Location", "").startswith("/auth/login")
    assert _events("user.signed_out_everywhere")[0].details == {"sessions_ended": 2}
    assert stored_user(victim.id).is_active


@pytest.mark.parametrize(("sessions", "said"), [(1, "1 session ended"), (2, "2 sessions ended")])
def test_the_sign_out_and_2fa_reset_notes_count_in_plain_english(
    app: Flask, sessions: int, said: str
) -> None:
    """"(1 sessions ended, ...)": the count was always followed by a plural."""
    from bastion.api import pats

    admin_client = client_for(app, UserFactory(role_name="admin"))
    victim, lost = UserFactory(), UserFactory(two_factor=True)
    for _ in range(sessions):
        client_for(app, victim)
        client_for(app, lost)
    pats.create(lost, name="ci", scopes=["articles:read"])
    post(admin_client, f"/admin/users/{victim.id}/sign-out", _named(victim))
    page = admin_client.get("/admin/users").get_data(as_text=True)
    assert f"is signed out everywhere ({said}, personal access tokens revoked)." in page
    post(admin_client, f"/admin/users/{lost.id}/2fa-reset",
         {"confirm": lost.username, "reason": "Video call, face matched to the ID photo"})
    page = admin_client.get("/admin/users").get_data(as_text=True)
    assert f"is reset ({said}, 1 API token revoked);" in page


@pytest.mark.asvs("V16.3.2")
def test_admin_cannot_disable_themself_and_the_attempt_is_audited(app: Flask) -> None:
    boss = UserFactory(role_name="admin")
    UserFactory(role_name="admin")
    client = client_for(app, boss)
    post(client, f"/admin/users/{boss.id}/disable", _named(boss))
    assert stored_user(boss.id).is_active
    assert "You cannot disable your own account." in client.get("/admin/users").get_data(
        as_text=True
    )
    # The users list offers no Disable on one's own row: the request was made by hand.
    (denied,) = _events("authz.denied")
    assert denied.actor_id == boss.id
    assert denied.details == {"hidden": False, "what": f"disable user {boss.id}"}
    assert not _events("user.disabled")


@pytest.mark.asvs("V7.5.1")
def test_changes_need_a_recent_reauthentication(app: Flask) -> None:
    someone = UserFactory()
    boss = UserFactory(role_name="admin")
    client = client_for(app, boss)
    age_reauthentication(boss, minutes=60)
    resp = post(client, f"/admin/users/{someone.id}/role", _named(someone, role="admin"))
    assert resp.status_code == 302
    assert resp.headers["Location"].startswith("/auth/reauth")
    assert stored_user(someone.id).role_name == "viewer"


def test_user_search_treats_wildcards_literally(app: Flask) -> None:
    UserFactory(username="alice_1", display_name="Alice Wonder")
    UserFactory(username="bob")
    client = client_for(app, UserFactory(role_name="admin", username="root1"))
    html = client.get("/admin/users?q=_1").get_data(as_text=True)
    assert "alice_1" in html
    assert ">bob<" not in html
    html = client.get("/admin/users?q=wonder").get_data(as_text=True)
    assert "alice_1" in html
    assert "No user matches" in client.get("/admin/users?q=%25%25zz").get_data(as_text=True)


@pytest.mark.parametrize(
    "typed",
    ["bücher", "BÜCHER", "user@bücher.example", "@bücher.exam", "ｂüｃｈｅｒ.example"],
    ids=["label", "upper-case", "address", "part-of-domain", "full-width"],
)
def test_user_search_finds_an_address_by_its_unicode_domain(app: Flask, typed: str) -> None:
    # Domains are stored in IDNA ASCII: "bücher" matched nothing in "xn--bcher-kva".
    UserFactory(username="reader", email="user@xn--bcher-kva.example")
    UserFactory(username="other", email="user@buecher.example")
    client = client_for(app, UserFactory(role_name="admin", username="root1"))
    html = client.get("/admin/users", query_string={"q": typed}).get_data(as_text=True)
    assert ">reader<" in html
    assert ">other<" not in html


def test_user_search_by_unicode_domain_treats_wildcards_literally(app: Flask) -> None:
    UserFactory(username="exact", email="a_b@xn--bcher-kva.example")
    UserFactory(username="wildcard", email="axb@xn--bcher-kva.example")
    client = client_for(app, UserFactory(role_name="admin", username="root1"))
    query = {"q": "a_b@bücher.example"}
    html = client.get("/admin/users", query_string=query).get_data(as_text=True)
    assert ">exact<" in html
    assert ">wildcard<" not in html


@pytest.mark.asvs("V2.2.1", "V15.3.7")
def test_user_pages_link_with_the_search_only(app: Flask) -> None:
    UserFactory.create_batch(26)  # 25 a page
    client = client_for(app, UserFactory(role_name="admin", username="root1"))
    for extra in ("_method=POST", "endpoint=x", "_external=1&_scheme=http", "_scheme=http"):
        resp = client.get(f"/admin/users?q=user&{extra}")
        assert resp.status_code == 200, extra
        assert '<a href="/admin/users?q=user&amp;page=2" rel="next">' in resp.get_data(as_text=True)


def test_the_list_tells_a_never_confirmed_account_from_an_active_one(app: Flask) -> None:
    """Both read "Active", yet one cannot sign in and deleting it frees its username."""
    UserFactory(username="waiting", email_confirmed_at=None)
    UserFactory(username="member")
    client = client_for(app, UserFactory(role_name="admin", username="root1"))
    html = client.get("/admin/users?q=waiting").get_data(as_text=True)
    assert '<span class="badge">Unconfirmed</span>' in html
    html = client.get("/admin/users?q=member").get_data(as_text=True)
    assert "Unconfirmed" not in html


def test_a_page_past_the_end_of_the_users_says_so(app: Flask) -> None:
    """Past the last page (after deleting the one user on it) the list said "There are no
    users yet." or "No user matches" to an admin looking at a site full of users."""
    UserFactory.create_batch(26)  # 25 a page
    client = client_for(app, UserFactory(role_name="admin", username="root1"))
    html = client.get("/admin/users?page=5").get_data(as_text=True)
    assert "There are no users yet." not in html
    assert "There is no page 5." in html
    assert '<a href="/admin/users?page=2">Go to the last page (2)</a>' in html
    html = client.get("/admin/users?q=user&page=3").get_data(as_text=True)
    assert "No user matches" not in html
    assert "There is no page 3 of users matching “user”." in html
    assert '<a href="/admin/users?q=user&amp;page=2">Go to the last page (2)</a>' in html


def test_an_action_comes_back_to_the_page_and_search_it_was_made_on(app: Flask) -> None:
    """Changing a role or disabling someone on page 2 of a search came back to page 1 (of
    everyone, once the search was dropped): the admin had to find their place again."""
    UserFactory.create_batch(30)
    someone = UserFactory(username="user_zz")  # sorted last: on page 2
    client = client_for(app, UserFactory(role_name="admin", username="root1"))
    html = client.get("/admin/users?q=user&page=2").get_data(as_text=True)
    action = f"/admin/users/{someone.id}/disable?q=user&amp;page=2"
    assert f'action="{action}"' in html
    resp = post(client, action.replace("&amp;", "&"), _named(someone))
    assert resp.status_code == 302
    assert resp.headers["Location"] == "/admin/users?q=user&page=2"
    assert not stored_user(someone.id).is_active
    # The pages an action opens carry the place too: their form and their way back.
    delete = client.get(f"/admin/users/{someone.id}/delete?q=user&page=2").get_data(as_text=True)
    assert f'action="/admin/users/{someone.id}/delete?q=user&amp;page=2"' in delete
    assert '<a href="/admin/users?q=user&amp;page=2">Cancel</a>' in delete
    # Only a page number is kept: anything else in the address goes nowhere.
    resp = post(client, f"/admin/users/{someone.id}/enable?page=x&next=https://evil.example",
                _named(someone))
    assert resp.headers["Location"] == "/admin/users"


@pytest.mark.asvs("V15.3.3")
def test_role_form_sets_only_the_role(app: Flask) -> None:
    someone = UserFactory(email="someone@example.org")
    client = client_for(app, UserFactory(role_name="admin"))
    resp = post(
        client,
        f"/admin/users/{someone.id}/role",
        {"role": "editor", "email": "evil@example.org", "disabled_at": "2001-01-01",
         "password_hash": "x", "totp_enabled_at": "", "username": someone.username,
         "display_name": "Renamed"},
    )  # fmt: skip
    assert resp.status_code == 302
    after = stored_user(someone.id)
    assert after.role_name == "editor"
    assert (after.email, after.username, after.is_active) == (
        "someone@example.org", someone.username, True,
    )  # fmt: skip
    assert after.password_hash == someone.password_hash
    assert after.display_name == someone.display_name
