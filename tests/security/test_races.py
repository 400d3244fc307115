"""Invariants under concurrent requests, on SQLite and PostgreSQL.

Each racer runs in its own thread and app context (its own session and connection). The
racers meet at a ``threading.Barrier`` placed right after the read their decision rests on,
so that without a lock they all decide on the same stale state. With the fix, the second
racer waits for the first one's lock before that read and never reaches the barrier: the
first racer goes on once the barrier gives up (``BrokenBarrierError`` is expected there,
it only bounds the wait; nothing asserts on time). The single-use codes and refresh
tokens at the end already held (conditional UPDATEs); their tests guard that.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pyotp
import pytest
from flask import Flask
from sqlalchemy import func, select
from werkzeug.exceptions import HTTPException

from bastion.admin import services as admin
from bastion.api import pats, tokens
from bastion.auth import twofactor
from bastion.content import services as content
from bastion.extensions import db
from bastion.models import ApiToken, Article, Comment, RefreshToken, User
from bastion.security import authz
from tests.factories import TOTP_SECRET, ArticleFactory, UserFactory
from tests.support.races import meet_after, race


def _race(app: Flask, *actions: Callable[[], Any]) -> list[Any]:
    """Run ``actions`` at once, each in its own thread and app context."""
    return race(list(actions), app)


def _meet_after(monkeypatch: pytest.MonkeyPatch, owner: object, name: str, parties: int) -> None:
    """Make every racer wait after ``owner.name`` returns until all have read it."""
    meet_after(monkeypatch, owner, name, parties)


def _get(model: type, ident: int) -> Any:
    obj = db.session.get(model, ident)
    assert obj is not None
    return obj


# ----------------------------------------------------------------- the last admin ---
def _demote(user_id: int) -> Callable[[], Any]:
    return lambda: admin.set_role(None, _get(User, user_id), "editor")


def _disable(actor_id: int, user_id: int) -> Callable[[], Any]:
    return lambda: admin.set_disabled(_get(User, actor_id), _get(User, user_id), True)


@pytest.mark.asvs("V2.3.2", "V8.2.1")
@pytest.mark.parametrize("how", ["demote both", "disable each other", "demote and disable"])
def test_two_admins_at_once_cannot_leave_no_active_admin(
    app: Flask, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    a, b = UserFactory(role_name="admin"), UserFactory(role_name="admin")
    actions = {
        "demote both": (_demote(a.id), _demote(b.id)),
        "disable each other": (_disable(a.id, b.id), _disable(b.id, a.id)),
        "demote and disable": (_demote(a.id), _disable(a.id, b.id)),
    }[how]
    _meet_after(monkeypatch, admin, "_other_active_admins", 2)
    results = _race(app, *actions)

    active_admins = [u for u in (_get(User, a.id), _get(User, b.id)) if u.is_admin and u.is_active]
    assert len(active_admins) == 1, results
    refused = [r for r in results if isinstance(r, Exception)]
    assert len(refused) == 1, results
    assert isinstance(refused[0], admin.AdminError), refused  # a refusal, not a deadlock
    assert "last active admin" in str(refused[0])


# ------------------------------------------------------ personal access token limit ---
@pytest.mark.asvs("V2.3.2")
def test_parallel_token_creations_respect_the_per_user_limit(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pats, "MAX_TOKENS_PER_USER", 2)
    user = UserFactory()
    pats.create(user, name="existing", scopes=["articles:read"])
    uid, racers = user.id, 3

    def create(i: int) -> Callable[[], Any]:
        return lambda: pats.create(_get(User, uid), name=f"t{i}", scopes=["articles:read"])

    _meet_after(monkeypatch, pats, "list_for", racers)
    results = _race(app, *(create(i) for i in range(racers)))

    count = db.session.scalar(select(func.count()).where(ApiToken.user_id == uid))
    assert count == 2, results
    refused = [r for r in results if isinstance(r, Exception)]
    assert len(refused) == racers - 1
    assert all(isinstance(r, pats.TokenRequestError) for r in refused), refused


# --------------------------------------------------- comments on a vanishing article ---
@pytest.mark.asvs("V2.3.3", "V8.2.1")
@pytest.mark.parametrize("change", ["unpublish", "delete"])
def test_a_comment_racing_unpublish_or_delete_is_refused(
    app: Flask, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    """The comment passed its check while the article was published; the author's change
    commits before the comment is written. The comment must not land on a draft (comments
    only on published articles) nor stay behind as an orphan of a deleted article."""
    author = UserFactory(role_name="editor")
    article = ArticleFactory(author=author, status="published")
    reader = UserFactory()
    aid, author_id, reader_id = article.id, author.id, reader.id
    checked, changed = threading.Event(), threading.Event()
    real = authz.can_comment

    def check_then_wait(actor: object, art: Article) -> bool:
        allowed = real(actor, art)
        checked.set()
        changed.wait(10)  # the author's change commits in between
        return allowed

    monkeypatch.setattr(authz, "can_comment", check_then_wait)

    def comment() -> Any:
        return content.add_comment(_get(User, reader_id), _get(Article, aid), "First!")

    def author_changes() -> None:
        try:
            checked.wait(10)  # only once the comment has loaded the article and passed
            art, who = _get(Article, aid), _get(User, author_id)
            if change == "delete":
                content.delete_article(who, art)
            else:
                content.update_article(who, art, publish=False)
        finally:
            changed.set()

    results = _race(app, comment, author_changes)

    assert results[1] is None, results
    assert isinstance(results[0], HTTPException), results
    assert results[0].code in (403, 404)
    assert db.session.scalar(select(func.count()).select_from(Comment)) == 0


# ------------------------------------------------- single-use codes and refresh tokens ---
@pytest.mark.asvs("V6.5.1")
def test_one_recovery_code_used_at_once_succeeds_once(app: Flask) -> None:
    user = UserFactory(role_name="admin")
    (code, *_) = twofactor.new_recovery_codes(user)
    db.session.commit()
    uid = user.id
    results = _race(app, *(lambda: twofactor.use_recovery_code(_get(User, uid), code),) * 3)
    assert sorted(results) == [False, False, True], results


@pytest.mark.asvs("V6.5.1")
def test_one_totp_code_used_at_once_succeeds_once(app: Flask) -> None:
    user = UserFactory(role_name="admin")
    uid, code = user.id, pyotp.TOTP(TOTP_SECRET).now()
    results = _race(app, *(lambda: twofactor.verify_totp(_get(User, uid), code),) * 3)
    assert sorted(results) == [False, False, True], results


@pytest.mark.asvs("V7.4.1")
def test_one_refresh_token_rotated_twice_at_once_yields_at_most_one_pair(app: Flask) -> None:
    user = UserFactory()
    pair = tokens.issue_pair(user)
    results = _race(app, *(lambda: tokens.rotate(pair.refresh_token),) * 2)
    refused = [r for r in results if isinstance(r, tokens.TokenError)]
    assert len(refused) >= 1, results
    assert all(isinstance(r, tuple | tokens.TokenError) for r in results), results
    # The loser reports reuse and ends the family, the winner's new pair included.
    live = select(func.count()).where(RefreshToken.revoked_at.is_(None))
    assert db.session.scalar(live) == 0
