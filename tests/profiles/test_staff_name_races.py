"""A staff-like display name saved while its admin is demoted, on SQLite and PostgreSQL.

Only admins may carry a name that reads as the site's staff, and a demotion drops such a
name (``bastion.admin.demotion``). A name judged on the admin role, and stored after a
demotion had committed, went on signing a former admin's articles as staff.
"""

from __future__ import annotations

import pytest
from flask import Flask

from bastion.extensions import db
from bastion.models import User
from bastion.profiles import services as profiles
from tests.support.meanwhile import after_the_call, before_the_lock, demotable_admin, demoted
from tests.support.races import MEET_SECONDS

STAFF_LIKE = "Site Admin"


@pytest.mark.asvs("V8.2.1", "V2.3.3")
def test_a_staff_name_saved_while_its_admin_is_demoted_does_not_stay(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    member = demotable_admin()
    member_id = member.id
    # Without a lock the demotion commits once the name is judged, before it is stored;
    # with one it waits for the save.
    demotion = after_the_call(app, monkeypatch, profiles, "staff_name_problem", member_id,
                              demoted(), seconds=MEET_SECONDS * 2)
    try:
        profiles.update_profile(member, display_name=STAFF_LIKE, bio="")
    except profiles.ProfileError:
        db.session.rollback()  # judged on the new role: refused, also right
    demotion.finish()

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
    member = demotable_admin()
    member_id = member.id
    before_the_lock(app, monkeypatch, profiles, member_id, demoted())
    with pytest.raises(profiles.ProfileError, match="taken for the site's staff"):
        profiles.update_profile(member, display_name=STAFF_LIKE, bio="")

    db.session.expire_all()
    stored = db.session.get(User, member_id)
    assert stored is not None and stored.display_name == ""
