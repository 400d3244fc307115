"""A revoked JWT stays revoked when Redis forgets it.

Redis runs without persistence in the deployments ("holds nothing that must survive"), so
a restart, like a flush, empties it. Revocations live in the database too
(``bastion.api.revocation``), and every check reads a marker with the revocation keys:
without it the database answers and its revocations are copied back into Redis. The
server here is a private one, so restarting and flushing it harms no one else.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import redis
from flask import Flask
from sqlalchemy import event

from bastion.api import revocation, tokens
from bastion.api.auth import ApiPrincipal
from bastion.extensions import db
from bastion.models import RevokedToken, User, utcnow
from tests.api.conftest import Api
from tests.factories import UserFactory
from tests.ops.processes import ThrowawayRedis

pytestmark = [pytest.mark.redis, pytest.mark.postgres]



def _user() -> User:
    user: User = UserFactory(password_changed_at=utcnow() - timedelta(days=1))
    return user



def _revoke_the_access_token(access: str, user: User) -> None:
    tokens.revoke_token(access)  # POST /auth/revoke


def _sign_out_everywhere(access: str, user: User) -> None:
    tokens.revoke_all_for_user(user.id)  # its family, as every "end all sessions" path does


@pytest.mark.asvs("V7.4.1", "V7.4.5")
@pytest.mark.parametrize("revoke", [_revoke_the_access_token, _sign_out_everywhere])
def test_a_revoked_token_stays_revoked_when_redis_forgets(
    app: Flask,
    server: ThrowawayRedis,
    forget: Callable[[ThrowawayRedis], None],
    revoke: Callable[[str, User], None],
) -> None:
    api = Api(app.test_client())
    user, bystander = _user(), _user()
    access, other = tokens.issue_pair(user).access_token, api.access_for(bystander)
    for _ in range(2):  # verified, remembered, and its read rides with the limit's hit
        assert api.call("GET", "/me", access).status_code == 200
    revoke(access, user)
    assert api.call("GET", "/me", access).status_code == 401
    forget(server)
    assert api.call("GET", "/me", access).status_code == 401
    assert api.call("GET", "/me", other).status_code == 200  # nothing else is refused
    # The revocation is back in Redis: the next check needs no database.
    assert api.call("GET", "/me", access).status_code == 401
    assert revocation.any_revoked(*tokens.own_revocation_keys(tokens.decode(access, "access")))


@pytest.mark.asvs("V7.4.1")
def test_a_check_made_again_later_sees_a_revocation_redis_forgot(
    app: Flask, server: ThrowawayRedis
) -> None:
    """``ApiPrincipal.still_signed_in`` (under the user's lock) asks Redis on its own."""
    user = _user()
    claims = tokens.decode(tokens.issue_pair(user).access_token, "access")
    principal = ApiPrincipal(
        user.id, frozenset(), "jwt", revocation_keys=tokens.own_revocation_keys(claims)
    )
    assert principal.still_signed_in()
    tokens.revoke_all_for_user(user.id)
    server.restart()
    assert not principal.still_signed_in()


@pytest.mark.asvs("V7.4.1")
def test_the_same_token_revoked_twice_at_once_fails_neither_request(
    make_app: Callable[..., Flask], server: ThrowawayRedis
) -> None:
    """Both transactions add the same row: the second waits for the first and then keeps
    the row it finds (a client posting its token to /auth/revoke twice, say)."""
    first = make_app(backend="postgres", REDIS_URL=server.url)
    second = make_app(DATABASE_URL=first.config["DATABASE_URL"], REDIS_URL=server.url)
    key, until = "jti:" + "7" * 32, utcnow() + timedelta(minutes=15)
    outcome: list[BaseException | None] = []

    def revoke_in(app: Flask) -> None:
        with app.app_context():
            try:
                revocation.revoke(key, until + timedelta(minutes=1))
                outcome.append(None)
            except BaseException as exc:  # reported below, in the test's own thread
                outcome.append(exc)
            finally:
                db.session.remove()

    with first.app_context():
        revocation.revoke(key, until, commit=False)
        db.session.flush()  # inserted, not yet committed
        racing = threading.Thread(target=revoke_in, args=(second,))
        racing.start()
        racing.join(timeout=1.0)
        assert racing.is_alive()  # waiting for this transaction's row
        db.session.commit()
        racing.join(timeout=10)
        assert outcome == [None]
        assert revocation.any_revoked(key)
        row = db.session.get(RevokedToken, key, populate_existing=True)
        assert row is not None and row.expires_at == until + timedelta(minutes=1)
        db.session.remove()


@pytest.mark.asvs("V7.4.1")
def test_a_revocation_redis_forgot_before_its_commit_is_not_lost(
    make_app: Callable[..., Flask], server: ThrowawayRedis
) -> None:
    """Redis is told at once, the database at the commit: Redis forgetting in between,
    and another worker copying the rows back before that commit, left the revocation in
    neither Redis nor the copy, with the marker saying Redis holds them all."""
    first = make_app(backend="postgres", REDIS_URL=server.url)
    second = make_app(DATABASE_URL=first.config["DATABASE_URL"], REDIS_URL=server.url)
    key, until = "jti:" + "5" * 32, utcnow() + timedelta(minutes=15)
    with first.app_context():
        revocation.revoke(key, until, commit=False)  # as revoke_family, in a bigger change
        db.session.flush()
        server.flush()
        with second.app_context():  # another worker's request: no marker, so it restores
            assert not revocation.any_revoked("jti:" + "6" * 32)
            db.session.remove()
        db.session.commit()
        assert revocation.any_revoked(key)
        assert redis.Redis.from_url(server.url).exists(f"bastion:revoked:{key}")
        db.session.remove()


@pytest.mark.asvs("V7.4.1")
def test_after_redis_forgot_one_worker_copies_the_revocations_back_not_every_request(
    app: Flask, server: ThrowawayRedis
) -> None:
    """Every request that finds the marker missing answers from the database; they do not
    each read every live revocation and send it to Redis while the first copy is running."""
    rows = [{"key": f"jti:{n:032d}", "expires_at": utcnow() + timedelta(minutes=15)}
            for n in range(20_000)]
    db.session.execute(RevokedToken.__table__.insert(), rows)
    db.session.commit()
    db.session.remove()
    reads: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "revoked_tokens.expires_at FROM revoked_tokens" in " ".join(statement.split()):
            reads.append(statement)

    engine = db.engine
    event.listen(engine, "before_cursor_execute", seen)
    workers = 8
    start, answers = threading.Barrier(workers), []

    def request() -> None:
        with app.app_context():
            start.wait()
            # What each request's MGET found: neither its key nor the marker.
            answers.append(revocation.revoked((rows[0]["key"],), [None, None]))
            db.session.remove()

    try:
        threads = [threading.Thread(target=request) for _ in range(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert answers == [True] * workers  # the database answered each of them
    assert len(reads) == 1, f"{len(reads)} requests each copied every revocation"
    assert redis.Redis.from_url(server.url).get(f"bastion{revocation.LOADED_SUFFIX}")
    assert revocation.any_revoked(str(rows[-1]["key"]))
