"""A half-finished sign-in's marker stays spent when Redis forgets it.

Redis runs without persistence in the deployments, so a restart, like a flush, empties it:
the spent nonce must also be in the database (``bastion.auth.pending``), or a copy of the
cookie taken before the code would finish a second sign-in with the next code. The server
here is a private one, so restarting and flushing it harms no one else.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask
from sqlalchemy import func, select

from bastion.extensions import db
from bastion.models import UserSession
from tests.auth.test_pending_replay import COOKIE, _code_form, _tess
from tests.ops.processes import ThrowawayRedis
from tests.support.account_fixtures import is_signed_in
from tests.support.accounts import unused_code

pytestmark = [pytest.mark.redis, pytest.mark.postgres]




@pytest.mark.asvs("V6.3.3", "V7.2.4")
def test_a_copied_cookie_finishes_no_sign_in_after_redis_forgot(
    app: Flask, server: ThrowawayRedis, forget: Callable[[ThrowawayRedis], None]
) -> None:
    user, secret = _tess()
    owner = app.test_client()
    form, copied = _code_form(owner, secret)
    done = owner.post("/auth/2fa", data=form)
    assert done.status_code == 302, done.get_data(as_text=True)
    assert done.headers["Location"] == "/account/sessions"
    assert is_signed_in(owner)
    forget(server)
    user.totp_last_step = None  # the next 30-second step: a code the owner has not used
    db.session.commit()
    attacker = app.test_client()
    attacker.set_cookie(COOKIE, copied, domain="localhost")

    refused = attacker.post("/auth/2fa", data={**form, "code": unused_code(secret, None)})

    assert refused.status_code == 302 and refused.headers["Location"] == "/auth/login"
    assert not is_signed_in(attacker)
    assert db.session.scalar(select(func.count()).select_from(UserSession)) == 1
