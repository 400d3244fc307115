"""The session record lookup behind every signed-in request."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask, session
from sqlalchemy import event

from bastion.auth import sessions
from bastion.extensions import db
from tests.factories import UserFactory


@pytest.mark.asvs("V7.2.1")
def test_each_cookie_finds_its_own_record_with_user_and_role_in_one_query(app: Flask) -> None:
    """The statement is built once and shared: each lookup must bind its own session id."""
    alice, bob = UserFactory(), UserFactory()
    with app.test_request_context("/", base_url="https://localhost"):
        sid_alice = sessions.start_session(alice)
        sid_bob = sessions.start_session(bob)
        seen: list[str] = []

        def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            seen.append(statement)

        event.listen(db.engine, "before_cursor_execute", record)
        try:
            for sid, user in ((sid_bob, bob), (sid_alice, alice), (sid_bob, bob)):
                db.session.expunge_all()  # nothing held from an earlier lookup
                session["sid"] = sid
                seen.clear()
                found = sessions.current_record()
                assert found is not None and found.user_id == user.id
                assert found.user.role.name  # loaded with it, no second query
                assert len(seen) == 1 and "user_sessions" in seen[0]
            session["sid"] = sid_alice[:-2] + ("xy" if not sid_alice.endswith("xy") else "zz")
            assert sessions.current_record() is None
        finally:
            event.remove(db.engine, "before_cursor_execute", record)


@pytest.mark.asvs("V7.4.2")
def test_a_cookie_of_an_account_deleted_by_a_bare_statement_is_signed_out_not_a_500(
    app: Flask,
) -> None:
    """A DELETE run from a shell leaves the session rows where foreign keys are not enforced
    (SQLite here): the cookie must find no user, never crash on the missing one."""
    from sqlalchemy import delete

    from bastion.models import User
    from tests.support.account_fixtures import is_signed_in, sign_in

    user = UserFactory()
    client = app.test_client()
    sign_in(client, user.username)
    assert is_signed_in(client)
    db.session.execute(delete(User).where(User.id == user.id))
    db.session.commit()
    db.session.expunge_all()
    answer = client.get("/account")
    assert answer.status_code == 302 and "/auth/login" in answer.headers["Location"]
