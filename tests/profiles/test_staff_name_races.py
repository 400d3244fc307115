"""A staff-like display name saved while its admin is demoted, on SQLite and PostgreSQL.

Only admins may carry a name that reads as the site's staff, and a demotion drops such a
name (``bastion.admin.demotion``). A name judged on the admin role, and stored after a
demotion had committed, went on signing a former admin's articles as staff.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from flask import Flask

from bastion.admin import services as admin
from bastion.extensions import db
from bastion.models import User
from bastion.profiles import services as profiles
from tests.factories import UserFactory
from tests.support.races import MEET_SECONDS, elsewhere

STAFF_LIKE = "Site Admin"


@pytest.mark.asvs("V8.2.1", "V2.3.3")
def test_a_staff_name_saved_while_its_admin_is_demoted_does_not_stay(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    member = UserFactory(role_name="admin")
    UserFactory(role_name="admin")  # so that the member is not the last admin
    member_id = member.id
    demoted = threading.Event()

    def demote() -> None:
        user = db.session.get(User, member_id)
        assert user is not None
        admin.set_role(None, user, "editor")
        demoted.set()

    demotion = threading.Thread(target=lambda: elsewhere(app, demote))
    real = profiles.staff_name_problem

    def judged_then_demoted(user: User, name: str) -> Any:
        problem = real(user, name)
        demotion.start()
        # Without a lock the demotion commits now, before the name is stored; with one it
        # waits for the save, and this wait only bounds how long the save is held up.
        demoted.wait(MEET_SECONDS * 2)
        return problem

    monkeypatch.setattr(profiles, "staff_name_problem", judged_then_demoted)
    try:
        profiles.update_profile(member, display_name=STAFF_LIKE, bio="")
    except profiles.ProfileError:
        db.session.rollback()  # judged on the new role: refused, also right
    demotion.join(30)
    assert not demotion.is_alive()

    db.session.expire_all()
    stored = db.session.get(User, member_id)
    assert stored is not None and stored.role_name == "editor"
    assert stored.display_name != STAFF_LIKE


@pytest.mark.asvs("V8.2.1", "V2.3.3")
def test_a_staff_name_saved_just_after_its_admin_was_demoted_is_refused(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demotion committed after the request loaded the account, before the save: the
    name is judged on the role as it is now, not as loaded."""
    member = UserFactory(role_name="admin")
    UserFactory(role_name="admin")
    member_id = member.id
    real = profiles.lock_user

    def demoted_then_locked(user_id: int) -> None:
        def demote() -> None:
            user = db.session.get(User, member_id)
            assert user is not None
            admin.set_role(None, user, "editor")

        elsewhere(app, demote)
        real(user_id)

    monkeypatch.setattr(profiles, "lock_user", demoted_then_locked)
    with pytest.raises(profiles.ProfileError, match="taken for the site's staff"):
        profiles.update_profile(member, display_name=STAFF_LIKE, bio="")

    db.session.expire_all()
    stored = db.session.get(User, member_id)
    assert stored is not None and stored.display_name == ""
