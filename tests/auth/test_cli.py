"""``users`` and ``sessions`` commands."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import delete, select

from bastion.admin import deletion
from bastion.auth.services import username_taken
from bastion.extensions import db
from bastion.models import AuditEvent, RetiredUsername, User, UserSession
from bastion.security import audit
from tests.factories import UserFactory
from tests.support.account_fixtures import is_signed_in, sign_in


def test_users_list_says_when_there_is_no_account(runner: Any) -> None:
    result = runner.invoke(args=["users", "list"])
    assert result.exit_code == 0 and result.stdout == ""
    assert "No accounts yet" in result.stderr


def test_users_list_shows_accounts(runner: Any, user: User) -> None:
    result = runner.invoke(args=["users", "list"])
    assert result.exit_code == 0 and "alice\talice@example.org\tviewer\tactive" in result.output


@pytest.mark.asvs("V7.4.2")
def test_disable_ends_sessions_and_blocks_sign_in(runner: Any, client: Any, user: User) -> None:
    sign_in(client, "alice")
    assert runner.invoke(args=["users", "disable", "alice"]).exit_code == 0
    assert not is_signed_in(client)
    sign_in(client, "alice")
    assert not is_signed_in(client)
    again = runner.invoke(args=["users", "disable", "alice"])
    assert again.exit_code == 0 and "already disabled; nothing changed" in again.output


def test_set_role_refuses_to_demote_the_last_admin(runner: Any) -> None:
    UserFactory(username="root1", email="root1@example.org", role_name="admin")
    result = runner.invoke(args=["users", "set-role", "root1", "viewer"])
    assert result.exit_code != 0 and "last active admin" in result.output
    UserFactory(username="root2", email="root2@example.org", role_name="admin")
    assert runner.invoke(args=["users", "set-role", "root1", "editor"]).exit_code == 0
    assert db.session.scalar(select(User).where(User.username == "root1")).role_name == "editor"
    assert runner.invoke(args=["users", "disable", "root2"]).exit_code != 0


@pytest.mark.asvs("V7.4.2")
def test_sessions_revoke_signs_the_user_out(runner: Any, client: Any, user: User) -> None:
    sign_in(client, "alice")
    result = runner.invoke(args=["sessions", "revoke", "alice"])
    assert result.exit_code == 0 and result.output == (
        "Ended 1 session(s) of alice. Their API tokens (access, refresh and personal) no "
        "longer work either.\n")
    assert not is_signed_in(client)
    assert db.session.scalar(select(UserSession)).revoked_at is not None
    assert runner.invoke(args=["sessions", "revoke", "nobody"]).exit_code != 0


@pytest.mark.asvs("V7.4.5")
def test_sessions_revoke_all_users(runner: Any, client: Any, user: User) -> None:
    UserFactory(username="bob", email="bob@example.org")
    bob = client.application.test_client()
    sign_in(bob, "bob")
    sign_in(client, "alice")
    result = runner.invoke(args=["sessions", "revoke", "--all"])
    assert result.exit_code == 0 and "Ended 2 session(s) of all users" in result.output
    assert not is_signed_in(client) and not is_signed_in(bob)
    assert runner.invoke(args=["sessions", "revoke"]).exit_code != 0


@pytest.mark.asvs("V2.3.2")
def test_purge_unconfirmed_deletes_only_old_never_confirmed_accounts(runner: Any) -> None:
    from datetime import timedelta

    from bastion.models import AuditEvent, utcnow

    old = utcnow() - timedelta(hours=49)
    stale = UserFactory(username="stale", email_confirmed_at=None, created_at=old).id
    fresh = UserFactory(username="fresh", email_confirmed_at=None).id  # its link still works
    kept = UserFactory(username="kept", created_at=old).id  # confirmed long ago

    dry = runner.invoke(args=["users", "purge-unconfirmed", "--dry-run"])
    assert dry.exit_code == 0 and dry.output.startswith("1 account(s)"), dry.output
    assert db.session.get(User, stale) is not None

    result = runner.invoke(args=["users", "purge-unconfirmed"])
    assert result.exit_code == 0, result.output
    assert "Deleted 1 account(s)" in result.output
    db.session.expire_all()
    assert db.session.get(User, stale) is None
    assert db.session.get(User, fresh) is not None and db.session.get(User, kept) is not None
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.event == "users.unconfirmed_purged"))
    assert event is not None and event.details["count"] == 1
    assert event.details["via"] == "cli" and event.details["operator"]


def test_purge_unconfirmed_refuses_an_age_whose_links_still_work(runner: Any) -> None:
    young = UserFactory(username="young", email_confirmed_at=None).id
    result = runner.invoke(args=["users", "purge-unconfirmed", "--older-than-hours", "1"])
    assert result.exit_code == 2
    assert "at least BASTION_CONFIRM_HOURS (48)" in result.output
    assert db.session.get(User, young) is not None


def _deleted_by_the_previous_release(username: str) -> datetime:
    """An account deleted as the release before migration 0018 deletes one while it still
    serves: the row goes and the trail records it, without ``confirmed``; nothing is
    retired. The time of the event."""
    user = UserFactory(username=username)
    user_id = user.id
    db.session.delete(user)
    db.session.flush()
    event = audit.record("user.deleted", target_user_id=user_id, details={
        "username": username, "email_domain": "example.org", "articles": 0, "comments": 0,
        "comments_by_others": 0, "images": 0, "images_kept": 0, "sessions_ended": 0,
    }, commit=False)  # fmt: skip
    db.session.commit()
    return event.created_at


def _retired() -> dict[str, datetime]:
    db.session.expire_all()
    rows = db.session.execute(select(RetiredUsername.username, RetiredUsername.retired_at))
    return dict(rows.all())


def _retirements() -> list[AuditEvent]:
    return list(db.session.scalars(
        select(AuditEvent).where(AuditEvent.event == "users.usernames_retired")))  # fmt: skip


@pytest.mark.asvs("V2.3.2")
def test_retire_deleted_retires_the_names_the_previous_release_left_free(runner: Any) -> None:
    """During a rolling upgrade the previous release deletes accounts without retiring
    their names; the command retires them afterwards, once, by the migration's rule."""
    boss = UserFactory(username="boss", role_name="admin")
    gone = _deleted_by_the_previous_release("gone")
    _deleted_by_the_previous_release("back")
    UserFactory(username="back")  # registered again since (the previous release allowed it)
    # Deleted by this release: an account never confirmed keeps its name free, and says so.
    squatter = UserFactory(username="squat", email_confirmed_at=None)
    deletion.delete_user(boss, squatter, confirmation="squat")
    flag = db.session.scalar(select(AuditEvent).where(AuditEvent.event == "user.deleted")
                             .order_by(AuditEvent.id.desc()))  # fmt: skip
    assert flag is not None and flag.details["confirmed"] is False
    # A confirmed one is retired at its deletion; an operator gave this name back since.
    deletion.delete_user(boss, UserFactory(username="given"), confirmation="given")
    db.session.execute(delete(RetiredUsername).where(RetiredUsername.username == "given"))
    db.session.commit()
    # A name the previous release deleted, then this release retired: nothing to do.
    _deleted_by_the_previous_release("twice")
    deletion.delete_user(boss, UserFactory(username="twice"), confirmation="twice")
    before = _retired()
    assert set(before) == {"twice"}

    result = runner.invoke(args=["users", "retire-deleted"])

    assert result.exit_code == 0, result.output
    assert result.output == "Retired 1 username(s) of deleted accounts: gone.\n"
    assert _retired() == {**before, "gone": gone}  # dated by its deletion, as the migration does
    assert username_taken("GONE") and username_taken("back")
    assert not username_taken("squat") and not username_taken("given")
    (event,) = _retirements()
    assert event.details["count"] == 1 and event.details["usernames"] == ["gone"]
    assert event.details["via"] == "cli" and event.details["operator"]

    again = runner.invoke(args=["users", "retire-deleted"])
    assert again.exit_code == 0, again.output
    assert again.output.startswith("0 username(s) retired") and "nothing changed" in again.output
    assert _retired() == {**before, "gone": gone}
    assert len(_retirements()) == 1  # nothing changed, nothing audited


def _releases() -> list[AuditEvent]:
    return list(db.session.scalars(
        select(AuditEvent).where(AuditEvent.event == "users.username_released")))  # fmt: skip


@pytest.mark.asvs("V2.3.2", "V16.3.2")
def test_release_username_gives_a_retired_name_back_once_and_audits_why(runner: Any) -> None:
    boss = UserFactory(username="boss", role_name="admin")
    deletion.delete_user(boss, UserFactory(username="mistake"), confirmation="mistake")
    deletion.delete_user(boss, UserFactory(username="keeper"), confirmation="keeper")
    assert username_taken("mistake")
    why = "Deleted by mistake; ticket 4711, holder verified by phone."

    result = runner.invoke(args=["users", "release-username", " MISTAKE ", "--reason", why])

    assert result.exit_code == 0, result.output
    assert result.output == "'mistake' is no longer retired: the next account may register it.\n"
    assert not username_taken("mistake") and username_taken("keeper")
    (event,) = _releases()
    assert event.details["username"] == "mistake" and event.details["reason"] == why
    assert event.details["via"] == "cli" and event.details["operator"]

    again = runner.invoke(args=["users", "release-username", "mistake", "--reason", why])
    assert again.exit_code == 0, again.output
    assert again.output == "'mistake' is not retired; nothing changed.\n"
    assert len(_releases()) == 1  # nothing changed, nothing audited


@pytest.mark.parametrize(("reason", "status", "said"), [
    (None, 2, "Missing option '--reason'"),
    ("because", 1, "Say why the name is given back, in 10 to 500 characters."),
    ("x" * 501, 1, "Say why the name is given back, in 10 to 500 characters."),
    ("ok\x1b[2Jthe screen is cleared", 1, "The reason contains characters that are not allowed."),
], ids=["missing", "short", "long", "escape"])
def test_release_username_wants_a_reason_and_keeps_the_name_without_one(
    runner: Any, reason: str | None, status: int, said: str
) -> None:
    boss = UserFactory(username="boss", role_name="admin")
    deletion.delete_user(boss, UserFactory(username="kept"), confirmation="kept")
    args = ["users", "release-username", "kept"]
    result = runner.invoke(args=args if reason is None else [*args, "--reason", reason])
    assert result.exit_code == status and said in result.output, result.output
    assert username_taken("kept") and _releases() == []


def test_retire_deleted_leaves_a_released_name_free(runner: Any) -> None:
    """A name the previous release deleted, retired by the command, then given back by an
    operator: running the command again must not take it back."""
    _deleted_by_the_previous_release("returner")
    assert runner.invoke(args=["users", "retire-deleted"]).exit_code == 0
    assert username_taken("returner")
    why = "The holder came back and asked for the name."
    assert runner.invoke(args=["users", "release-username", "returner", "--reason", why]
                         ).exit_code == 0  # fmt: skip
    again = runner.invoke(args=["users", "retire-deleted"])
    assert again.exit_code == 0 and again.output.startswith("0 username(s) retired")
    assert not username_taken("returner")
    # Deleted again later (by the previous release, still serving): retired again.
    _deleted_by_the_previous_release("returner")
    assert runner.invoke(args=["users", "retire-deleted"]).output.startswith("Retired 1")
    assert username_taken("returner")


def test_release_username_frees_a_name_retire_deleted_has_yet_to_retire(runner: Any) -> None:
    """Deleted by the previous release and not retired yet: the command said "not retired;
    nothing changed", and ``retire-deleted`` then retired the name the operator gave back."""
    _deleted_by_the_previous_release("pending")
    why = "Deleted by mistake; ticket 4712, holder verified."
    result = runner.invoke(args=["users", "release-username", "pending", "--reason", why])
    assert result.exit_code == 0, result.output
    assert "no longer retired" in result.output
    assert [event.details["username"] for event in _releases()] == ["pending"]
    assert runner.invoke(args=["users", "retire-deleted"]).output.startswith("0 username(s)")
    assert not username_taken("pending")


@pytest.mark.parametrize("spelling", [
    "m\u0456stake",  # a Cyrillic i: printed like the retired name, "not retired", exit 0
    "mis\u200btake",  # a zero-width space
    "mistake!",
    "x" * 200,
], ids=["confusable", "zero-width", "punctuation", "long"])
def test_release_username_refuses_what_is_no_username(runner: Any, spelling: str) -> None:
    """An operator who pasted a look-alike of a retired name was told, with exit 0, that
    the name (printed the same) is not retired: the claimant was sent to register a name
    still refused."""
    boss = UserFactory(username="boss", role_name="admin")
    deletion.delete_user(boss, UserFactory(username="mistake"), confirmation="mistake")
    why = "Deleted by mistake; ticket 4713, holder verified."
    result = runner.invoke(args=["users", "release-username", spelling, "--reason", why])
    assert result.exit_code == 2, result.output
    assert "is no username" in result.output and ascii(spelling[:40])[:30] in result.output
    assert result.output.isascii()  # the look-alike is spelled out
    assert username_taken("mistake") and _releases() == []


def test_release_username_refuses_a_name_an_account_holds(runner: Any) -> None:
    """Retired and held (registered between retire-deleted's reading and its commit, or by
    SQL): the command said the next account may register it, which none can."""
    UserFactory(username="holder")
    db.session.add(RetiredUsername(username="holder"))
    db.session.commit()
    why = "The holder came back and asked for the name."
    result = runner.invoke(args=["users", "release-username", "holder", "--reason", why])
    assert result.exit_code == 1, result.output
    assert "An account holds 'holder'" in result.output
    assert _retired().keys() == {"holder"} and _releases() == []


def test_retire_deleted_with_nothing_to_retire_changes_nothing(runner: Any) -> None:
    UserFactory(username="alice")
    result = runner.invoke(args=["users", "retire-deleted"])
    assert result.exit_code == 0, result.output
    assert "0 username(s) retired" in result.output and "nothing changed" in result.output
    assert _retired() == {} and _retirements() == []
    assert runner.invoke(args=["users", "retire-deleted", "--all"]).exit_code == 2
