"""A personal access token made while its maker's role is lowered, on SQLite and PostgreSQL.

The demotion revokes every token holding a scope the new role cannot grant, so that a later
promotion does not bring such a token back whole (``bastion.admin.demotion``). A token whose
scopes were judged on the old role, and written after the demotion committed, escaped that.
"""

from __future__ import annotations

import pytest
from flask import Flask
from sqlalchemy import select

from bastion.api import pats
from bastion.extensions import db
from bastion.models import ApiToken
from tests.support.meanwhile import before_the_lock, demotable_admin, demoted


@pytest.mark.asvs("V8.2.1", "V2.3.3")
def test_a_token_made_while_its_maker_is_demoted_gets_no_scope_beyond_the_new_role(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    maker = demotable_admin()
    maker_id = maker.id
    # The demotion commits after the scopes were judged, before the lock.
    before_the_lock(app, monkeypatch, pats, maker_id, demoted())
    with pytest.raises(pats.TokenRequestError, match="Your role cannot grant: admin"):
        pats.create(maker, name="ci", scopes=["admin", "articles:read"])

    db.session.rollback()
    live = select(ApiToken.scopes).where(ApiToken.user_id == maker_id,
                                         ApiToken.revoked_at.is_(None))
    assert db.session.scalars(live).all() == []


@pytest.mark.asvs("V8.2.1", "V2.3.3")
def test_a_token_made_while_its_makers_role_stays_as_wide_is_made(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Judged again under the lock, a role still wide enough for the scopes is no refusal."""
    maker = demotable_admin()
    before_the_lock(app, monkeypatch, pats, maker.id, demoted())
    created = pats.create(maker, name="ci", scopes=["articles:write"])

    assert created.record.scopes == "articles:write"
    assert created.record.revoked_at is None
