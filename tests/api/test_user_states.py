"""A worker's snapshot of a token's user saves a database read, and never outlives a change.

Two app instances share one PostgreSQL database and one Redis, as two gunicorn workers
(or two pods) do: ``reader`` serves API calls and keeps snapshots, ``writer`` changes the
user the way the rest of the site does, and ``reader`` must see each change on the very
next request.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event, select, text, update
from werkzeug.exceptions import HTTPException

from bastion.api import tokens, user_states
from bastion.auth.services import role_named
from bastion.extensions import db
from bastion.models import User, utcnow
from tests.api.conftest import Api
from tests.factories import UserFactory

pytestmark = [pytest.mark.redis, pytest.mark.postgres]


@dataclass
class Pair:
    reader: Flask
    writer: Flask
    user_id: int
    access: str

    def call(self, method: str = "GET", path: str = "/me", **kwargs: Any) -> Any:
        with self.reader.app_context():
            try:
                return Api(self.reader.test_client()).call(method, path, self.access, **kwargs)
            finally:
                db.session.remove()

    def write(self, change: Callable[[User], None]) -> None:
        with self.writer.app_context():
            user = db.session.get(User, self.user_id)
            assert user is not None
            change(user)
            db.session.commit()
            db.session.remove()

    def user_reads(self, path: str = "/articles") -> tuple[int, int]:
        """The status of a call and how many statements it sent that read the users table."""
        seen: list[str] = []

        def record(*args: Any) -> None:
            if "FROM users" in args[2]:
                seen.append(args[2])

        with self.reader.app_context():
            engine = db.engine
        event.listen(engine, "before_cursor_execute", record)
        try:
            status = self.call("GET", path).status_code
        finally:
            event.remove(engine, "before_cursor_execute", record)
        return status, len(seen)


@pytest.fixture
def pair(make_app: Callable[..., Flask], redis_url: str) -> Pair:
    prefix = os.environ["BASTION_TEST_REDIS_PREFIX"]
    shared = {"REDIS_URL": redis_url, "REDIS_PREFIX": prefix, "RATELIMIT_KEY_PREFIX": prefix}
    reader = make_app(backend="postgres", **shared)
    writer = make_app(DATABASE_URL=reader.config["DATABASE_URL"], **shared)
    with reader.app_context():
        user = UserFactory(role_name="editor", password_changed_at=utcnow() - timedelta(days=1))
        access = tokens.issue_pair(user).access_token
        user_id = user.id
        db.session.remove()
    return Pair(reader, writer, user_id, access)


@pytest.mark.asvs("V7.4.2")
def test_a_known_user_costs_no_database_read(pair: Pair) -> None:
    assert pair.user_reads() == (200, 1)  # the first call reads the row and keeps a snapshot
    assert pair.user_reads() == (200, 0)
    assert pair.user_reads() == (200, 0)


def _disable(user: User) -> None:
    user.disabled_at = utcnow()


def _change_password(user: User) -> None:
    user.password_changed_at = utcnow()


def _delete(user: User) -> None:
    db.session.delete(user)


@pytest.mark.asvs("V7.4.1", "V7.4.2")
@pytest.mark.parametrize("change", [_disable, _change_password, _delete])
def test_a_change_made_elsewhere_ends_the_token_at_once(
    pair: Pair, change: Callable[[User], None]
) -> None:
    """Plain ORM writes, without the services that also revoke tokens: the snapshot alone
    must not keep the token alive (the published list reads no row of its own)."""
    assert pair.user_reads() == (200, 1)
    assert pair.user_reads() == (200, 0)  # the snapshot is in use
    pair.write(change)
    assert pair.call("GET", "/articles").status_code == 401


@pytest.mark.asvs("V8.2.1", "V8.3.1")
def test_a_demotion_takes_the_scopes_away_on_the_next_request(pair: Pair) -> None:
    draft = {"title": "Before the demotion", "body": "Some body text."}
    assert pair.call("POST", "/articles", json=draft).status_code == 201
    assert pair.call().get_json()["role"] == "editor"

    def demote(user: User) -> None:
        user.role = role_named("viewer")

    pair.write(demote)
    resp = pair.call("POST", "/articles", json={**draft, "title": "After the demotion"})
    assert resp.status_code == 403
    assert "articles:write" in resp.get_json()["detail"]


@pytest.mark.asvs("V7.4.2")
def test_a_bulk_update_of_users_invalidates_every_snapshot(pair: Pair) -> None:
    assert pair.user_reads() == (200, 1)
    with pair.writer.app_context():
        db.session.execute(
            update(User).where(User.id == pair.user_id).values(disabled_at=utcnow())
        )
        db.session.commit()
        db.session.remove()
    assert pair.call("GET", "/articles").status_code == 401


def test_a_bulk_update_declared_neutral_keeps_snapshots(pair: Pair) -> None:
    assert pair.user_reads() == (200, 1)
    with pair.writer.app_context():
        db.session.execute(
            update(User)
            .where(User.id == pair.user_id)
            .values(totp_last_step=1)
            .execution_options(user_state_neutral=True)
        )
        db.session.commit()
        db.session.remove()
    assert pair.user_reads() == (200, 0)


def test_a_rolled_back_change_keeps_the_stamp(pair: Pair) -> None:
    assert pair.user_reads() == (200, 1)
    with pair.writer.app_context():
        user = db.session.get(User, pair.user_id)
        assert user is not None
        user.disabled_at = utcnow()
        db.session.flush()
        db.session.rollback()
        db.session.remove()
    assert pair.user_reads() == (200, 0)


def _raw_disable(pair: Pair) -> None:
    """A write no session event sees (another tool, a manual fix in psql)."""
    with pair.writer.app_context():
        db.session.execute(
            text("UPDATE users SET disabled_at = :now WHERE id = :id"),
            {"now": utcnow(), "id": pair.user_id},
        )
        db.session.commit()
        db.session.remove()


@pytest.mark.asvs("V7.4.2")
def test_a_lost_stamp_forces_a_fresh_read(pair: Pair) -> None:
    """Redis evicted or flushed: a missing stamp is never taken as "unchanged"."""
    assert pair.user_reads() == (200, 1)
    _raw_disable(pair)
    # Nothing told Redis, so the snapshot is used (the published list needs no row)...
    assert pair.call("GET", "/articles").status_code == 200
    with pair.reader.app_context():
        from bastion.redis_client import get_redis

        user_key, _epoch = user_states._keys(pair.user_id)
        assert get_redis().delete(user_key) == 1
    assert pair.call("GET", "/articles").status_code == 401  # ...until its stamp is gone


@pytest.mark.asvs("V7.4.2")
def test_a_snapshot_is_never_used_past_its_maximum_age(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bounds the damage of a stamp change lost to a Redis failure right after a commit."""
    assert pair.user_reads() == (200, 1)
    _raw_disable(pair)
    assert pair.call("GET", "/articles").status_code == 200
    monkeypatch.setattr(user_states, "MAX_AGE", 0.0)
    assert pair.call("GET", "/articles").status_code == 401


def test_the_stamp_is_replaced_only_after_the_commit(pair: Pair) -> None:
    """Replacing it earlier would let a reader cache the old row under the new stamp."""
    assert pair.user_reads() == (200, 1)
    with pair.writer.app_context():
        from bastion.redis_client import get_redis

        user_key, _epoch = user_states._keys(pair.user_id)
        before = get_redis().get(user_key)
        user = db.session.get(User, pair.user_id)
        assert user is not None
        user.disabled_at = utcnow()
        db.session.flush()
        assert get_redis().get(user_key) == before
        db.session.commit()
        assert get_redis().get(user_key) != before
        db.session.remove()


def test_the_lazy_user_refuses_a_row_disabled_after_authentication(pair: Pair) -> None:
    """Views that need the row read it after authentication; if it changed in between,
    the request is refused rather than acting for a disabled account."""
    assert pair.user_reads() == (200, 1)
    from bastion.api.auth import ApiPrincipal

    with pair.reader.test_request_context("/api/v1/me"):
        _raw_disable(pair)
        principal = ApiPrincipal(pair.user_id, frozenset(), "jwt")
        with pytest.raises(HTTPException) as caught:
            _ = principal.user
        assert caught.value.get_response().status_code == 401
        assert db.session.scalar(select(User.disabled_at).where(User.id == pair.user_id))


def test_readers_that_both_find_no_stamp_agree_on_one(pair: Pair) -> None:
    """Two workers that miss the stamp at once must not each cache under their own value,
    or a writer's later replacement would be checked against the wrong one."""
    with pair.reader.app_context():
        from bastion.redis_client import get_redis

        user_key, epoch_key = user_states._keys(pair.user_id)
        get_redis().delete(user_key, epoch_key)
        first = user_states._settle(pair.user_id, (None, None))
        second = user_states._settle(pair.user_id, (None, None))
        assert first == second == (get_redis().get(user_key), get_redis().get(epoch_key))


def _disable_in_a_released_savepoint(pair: Pair, user: User) -> None:
    """Releasing a savepoint fires SQLAlchemy's after_commit too. A stamp replaced then,
    with the change still uncommitted, would let a reader keep the old row under it."""
    with db.session.begin_nested():
        user.disabled_at = utcnow()
    assert pair.user_reads() == (200, 0)  # nothing committed yet: the snapshot stands


def _disable_then_roll_back_a_savepoint(_pair: Pair, user: User) -> None:
    """A savepoint's rollback fires after_rollback: what was flushed before it stays."""
    user.disabled_at = utcnow()
    db.session.flush()
    db.session.begin_nested().rollback()


@pytest.mark.asvs("V7.4.1", "V7.4.2")
@pytest.mark.parametrize(
    "write", [_disable_in_a_released_savepoint, _disable_then_roll_back_a_savepoint]
)
def test_savepoints_neither_publish_early_nor_forget(
    pair: Pair, write: Callable[[Pair, User], None]
) -> None:
    assert pair.user_reads() == (200, 1)
    with pair.writer.app_context():
        user = db.session.get(User, pair.user_id)
        assert user is not None
        write(pair, user)
        db.session.commit()
        db.session.remove()
    assert pair.call("GET", "/articles").status_code == 401


@pytest.mark.asvs("V7.4.1", "V7.4.2")
def test_an_update_on_the_bare_users_table_ends_the_token(pair: Pair) -> None:
    assert pair.user_reads() == (200, 1)
    table = User.__table__
    with pair.writer.app_context():
        db.session.execute(
            update(table).where(table.c.id == pair.user_id).values(disabled_at=utcnow())
        )
        db.session.commit()
        db.session.remove()
    assert pair.call("GET", "/articles").status_code == 401


@pytest.mark.asvs("V8.2.1")
@pytest.mark.parametrize("how", ["object", "statement"])
def test_renaming_a_role_drops_every_snapshot(pair: Pair, how: str) -> None:
    """Scopes follow the role's name: its holders' snapshots must not outlive a rename."""
    from bastion.models import Role

    def rename(old: str, new: str) -> None:
        with pair.writer.app_context():
            if how == "object":
                role = db.session.scalar(select(Role).where(Role.name == old))
                assert role is not None
                role.name = new
            else:
                db.session.execute(update(Role).where(Role.name == old).values(name=new))
            db.session.commit()
            db.session.remove()

    assert pair.user_reads() == (200, 1)
    assert pair.user_reads() == (200, 0)
    rename("editor", "editor-renamed")
    try:
        # Read again, not served from the snapshot: an unknown role's name grants nothing.
        assert pair.user_reads() == (403, 1)
    finally:
        rename("editor-renamed", "editor")


@pytest.mark.asvs("V6.3.3", "V8.2.1")
def test_a_promotion_without_2fa_refuses_the_next_request(pair: Pair) -> None:
    """An editor made admin (a role that requires 2FA) by a plain ORM write, which revokes
    nothing: the fresh state itself must refuse the token."""
    assert pair.user_reads() == (200, 1)

    def promote(user: User) -> None:
        user.role = role_named("admin")

    pair.write(promote)
    resp = pair.call("GET", "/articles")
    assert resp.status_code == 403
    assert "two-factor" in resp.get_json()["detail"]


@pytest.mark.asvs("V6.3.3", "V8.2.1")
def test_turning_2fa_off_is_seen_on_the_next_request(pair: Pair) -> None:
    """The second factor is part of the snapshot: its loss replaces the stamp."""

    def promote_enrolled(user: User) -> None:
        user.role = role_named("admin")
        user.totp_enabled_at = utcnow()

    def turn_off(user: User) -> None:
        user.totp_enabled_at = None

    pair.write(promote_enrolled)
    assert pair.user_reads() == (200, 1)
    assert pair.user_reads() == (200, 0)  # the snapshot is in use
    pair.write(turn_off)
    assert pair.user_reads() == (403, 1)
    pair.write(promote_enrolled)  # enrolled again: the same token works again
    assert pair.user_reads() == (200, 1)


def test_the_snapshots_are_bounded(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One per user: many users (or token holders) cost database reads, not memory."""
    monkeypatch.setattr(user_states, "_MAX_SNAPSHOTS", 2)
    with pair.reader.app_context():
        others = [UserFactory(password_changed_at=utcnow() - timedelta(days=1)) for _ in range(3)]
        access = [tokens.issue_pair(user).access_token for user in others]
        db.session.remove()
    for token in [pair.access, *access]:
        with pair.reader.app_context():
            assert Api(pair.reader.test_client()).call("GET", "/me", token).status_code == 200
            db.session.remove()
    assert len(pair.reader.extensions["bastion.user_states"]) <= 2
    assert pair.call("GET", "/articles").status_code == 200
