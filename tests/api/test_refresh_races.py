"""A refresh racing the revocation of its family ("sign out everywhere") must not outlive it.

A refresh checks the revocations, marks its token used, then adds the family's next
member; a revocation running in between must win at every step: the conditional update
refuses a token revoked since the checks, the family's revocation lasts as long as any
member added later could live, and a member added after the revocation is ended at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select, text

from bastion.api import revocation, tokens, user_states
from bastion.auth import sessions
from bastion.extensions import db
from bastion.models import AuditEvent, RefreshToken, User, utcnow
from tests.api.conftest import Api
from tests.factories import UserFactory

pytestmark = pytest.mark.asvs("V7.4.1")


def _rows(user_id: int) -> list[RefreshToken]:
    db.session.expire_all()
    return list(db.session.scalars(select(RefreshToken).where(RefreshToken.user_id == user_id)))


def _refresh(api: Api, refresh_token: str) -> Any:
    return api.call("POST", "/auth/refresh", json={"refresh_token": refresh_token})


def test_sign_out_everywhere_after_a_refreshs_checks_still_refuses_it(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = UserFactory()
    pair = tokens.issue_pair(user)
    uid = user.id
    real = user_states.lacks_required_2fa

    # Called by the refresh after its revocation checks and before it marks the token used
    # (PostgreSQL: the update waits for the sign-out's row lock, then runs after its commit).
    def sign_out_everywhere_meanwhile(role: str, has_2fa: bool) -> bool:
        monkeypatch.setattr(user_states, "lacks_required_2fa", real)
        sessions.revoke_all(uid)
        return real(role, has_2fa)

    monkeypatch.setattr(user_states, "lacks_required_2fa", sign_out_everywhere_meanwhile)
    resp = _refresh(api, pair.refresh_token)
    assert resp.status_code == 401
    rows = _rows(uid)
    assert len(rows) == 1, "no new member was added to the revoked family"
    assert rows[0].revoked_at is not None
    # A revocation, not a replay: nothing to report as reuse.
    reuse = select(AuditEvent).where(AuditEvent.event == "token.refresh_reuse")
    assert db.session.scalar(reuse) is None


def test_a_family_revocation_outlives_a_member_added_after_it(
    app: Flask, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The member a racing refresh adds after the revocation's update lives a full refresh
    lifetime; the revocation must not lapse with the members that existed before it."""
    user = UserFactory()
    monkeypatch.setitem(app.config, "JWT_REFRESH_DAYS", 1 / 1440)  # an old sign-in: 1 minute left
    old = tokens.issue_pair(user)
    monkeypatch.setitem(app.config, "JWT_REFRESH_DAYS", 14)
    family = db.session.scalars(select(RefreshToken.family_id)).one()
    tokens.revoke_family(family)
    late = tokens.issue_pair(user, family=family)  # the racing refresh's new pair

    # An hour later, long after every member that existed at the revocation has expired.
    monkeypatch.setattr(revocation, "utcnow", lambda: utcnow() + timedelta(hours=1))
    assert api.call("GET", "/me", late.access_token).status_code == 401
    assert _refresh(api, late.refresh_token).status_code == 401
    assert _refresh(api, old.refresh_token).status_code == 401


def test_a_family_revoked_while_a_refresh_issues_its_pair_ends_that_pair_too(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = UserFactory()
    pair = tokens.issue_pair(user)
    uid = user.id
    real = tokens.issue_pair

    # The sign-out commits after the refresh marked its token used and before the new
    # member exists, so its update cannot end that member.
    def sign_out_everywhere_first(who: User, *, family: str | None = None) -> tokens.TokenPair:
        monkeypatch.setattr(tokens, "issue_pair", real)
        sessions.revoke_all(uid)
        return real(who, family=family)

    monkeypatch.setattr(tokens, "issue_pair", sign_out_everywhere_first)
    resp = _refresh(api, pair.refresh_token)
    assert resp.status_code == 401
    rows = _rows(uid)
    assert len(rows) == 2
    assert all(r.revoked_at is not None for r in rows), "the new member is ended too"


# Whether any other backend is waiting for a lock that the given backend holds (pg_locks,
# not pg_stat_activity, which a transaction sees as of its first look).
_BLOCKED_BY = text(
    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE NOT granted"
    " AND :pid = ANY(pg_blocking_pids(pid)))"
)


@pytest.mark.postgres
def test_a_refresh_during_sign_out_everywhere_is_refused_on_postgresql(
    make_app: Callable[..., Flask],
) -> None:
    """Real concurrency: the refresh starts while the sign-out holds its row locks."""
    app = make_app(backend="postgresql")
    with app.app_context():
        user = UserFactory()
        pair = tokens.issue_pair(user)
        uid = user.id
        db.session.remove()
        locked, blocked, failures = threading.Event(), threading.Event(), []

        def sign_out_everywhere() -> None:
            with app.app_context():
                try:
                    sessions.revoke_all(uid, commit=False)
                    me = db.session.scalar(text("SELECT pg_backend_pid()"))
                    locked.set()
                    # A slow commit: it waits until the refresh waits for its locks (a
                    # fixed half second let a busy machine start the refresh after it).
                    deadline = time.monotonic() + 30
                    while not blocked.is_set() and time.monotonic() < deadline:
                        if db.session.scalar(_BLOCKED_BY, {"pid": me}):
                            blocked.set()
                        time.sleep(0.02)
                    db.session.commit()
                except Exception as exc:  # pragma: no cover - reported below
                    failures.append(exc)
                finally:
                    locked.set()
                    db.session.remove()

        worker = threading.Thread(target=sign_out_everywhere)
        worker.start()
        assert locked.wait(30)
        resp = _refresh(Api(app.test_client()), pair.refresh_token)
        worker.join(60)
        assert not failures
        assert resp.status_code == 401
        assert blocked.is_set(), "the refresh waited for the sign-out's locks (the race was run)"
        rows = _rows(uid)
        assert rows
        assert all(r.revoked_at is not None for r in rows)
        db.session.remove()
