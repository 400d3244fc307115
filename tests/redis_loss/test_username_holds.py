"""A username held by a sign-up with a taken address stays held when Redis forgets it.

Redis runs without persistence in the deployments, so a restart, like a flush, empties it:
the hold must also be in the database (``bastion.auth.registration``), or a prober who made
many sign-ups could then retry each username and learn which addresses had accounts. The
server here is a private one, so restarting and flushing it harms no one else.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from bastion.api import revocation
from bastion.auth.services import USERNAME_TAKEN
from bastion.extensions import db
from bastion.models import RevokedToken, User, utcnow
from tests.factories import UserFactory
from tests.ops.processes import ThrowawayRedis
from tests.support.accounts import post_form

pytestmark = [pytest.mark.redis, pytest.mark.postgres]

TARGET = "target@example.org"
PW = "lilac harbour quietly 2031"
PROBE = {"username": "probe-one", "email": TARGET, "password": PW, "confirm": PW}




def _register(client: FlaskClient, **fields: str) -> tuple[int, bool]:
    """The status and whether the page says the username is taken."""
    resp = post_form(client, "/auth/register", {**PROBE, **fields})
    return resp.status_code, USERNAME_TAKEN in resp.get_data(as_text=True)


def _redis_keys(server: ThrowawayRedis, pattern: str) -> list[bytes]:
    return list(redis.Redis.from_url(server.url).scan_iter(match=pattern))


def _hold_rows() -> list[RevokedToken]:
    return list(db.session.scalars(select(RevokedToken).where(RevokedToken.key.startswith("hold:"))))


@pytest.mark.parametrize("taken", [False, True], ids=["free", "taken"])
def test_a_held_username_stays_taken_after_redis_forgot(
    app: Flask, server: ThrowawayRedis, forget: Callable[[ThrowawayRedis], None], taken: bool
) -> None:
    """After the restart or flush, the username of a sign-up with a taken address is as
    taken as that of the account a free address started."""
    if taken:
        UserFactory(username="owner", email=TARGET)
    client = app.test_client()
    assert _register(client)[0] == 302
    assert bool(_redis_keys(server, "*username-held*")) == taken  # the store held it first
    forget(server)
    assert not _redis_keys(server, "*username-held*")

    assert _register(client, email="fresh@attacker.example") == (422, True)
    assert db.session.scalar(select(User).where(User.email == "fresh@attacker.example")) is None


def test_the_held_username_is_free_again_once_the_hold_would_have_ended(
    app: Flask, server: ThrowawayRedis
) -> None:
    """The row keeps the name no longer than a confirmation link lives, as the Redis key
    and a stale unconfirmed account do."""
    UserFactory(username="owner", email=TARGET)
    client = app.test_client()
    assert _register(client)[0] == 302
    [row] = _hold_rows()
    hours = app.config["CONFIRM_HOURS"]
    assert abs(row.expires_at - (utcnow() + timedelta(hours=hours))) < timedelta(minutes=1)
    server.flush()
    db.session.execute(update(RevokedToken).where(RevokedToken.key == row.key)
                       .values(expires_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()

    assert _register(client, email="fresh@attacker.example")[0] == 302
    db.session.expire_all()
    owner = db.session.scalar(select(User).where(User.username == "probe-one"))
    assert owner is not None and owner.email == "fresh@attacker.example"


def test_no_hold_is_copied_back_among_the_revocations(app: Flask, server: ThrowawayRedis) -> None:
    """The rows share the table of revoked JWTs; only those go back into Redis."""
    UserFactory(username="owner", email=TARGET)
    assert _register(app.test_client())[0] == 302
    assert len(_hold_rows()) == 1
    server.flush()

    assert not revocation.any_revoked("jti:nothing-revoked")  # finds no marker: restores

    assert _redis_keys(server, "*revocations-loaded")
    assert not _redis_keys(server, "*revoked:*")
    assert len(_hold_rows()) == 1
