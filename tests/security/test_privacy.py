"""Personal data and account state shown to people who should not see them."""

from __future__ import annotations

import re

import pytest
from flask import Flask

from bastion.extensions import db
from bastion.models import User, utcnow
from tests.factories import UserFactory
from tests.support.roles import client_for

PER_REQUEST = re.compile(r'nonce="[^"]*"|name="csrf_token"[^>]*|<code>[0-9a-f]{32}</code>')


@pytest.mark.asvs("V8.2.3", "V14.2.4")
def test_unconfirmed_accounts_have_no_public_profile(app: Flask) -> None:
    # A sign-up nobody has confirmed (perhaps started with someone else's address) must
    # answer like an unknown or disabled name, for every kind of visitor.
    UserFactory(username="pending", email_confirmed_at=None)
    UserFactory(username="gone", disabled_at=utcnow())
    visitors = [client_for(app)] + [
        client_for(app, UserFactory(role_name=role)) for role in ("viewer", "editor")
    ]
    for visitor in visitors:
        answers = {name: visitor.get(f"/u/{name}") for name in ("pending", "gone", "nobody")}
        assert {r.status_code for r in answers.values()} == {404}
        assert len({PER_REQUEST.sub("", r.get_data(as_text=True)) for r in answers.values()}) == 1


@pytest.mark.asvs("V14.2.2")
def test_anonymous_profile_must_be_revalidated_by_shared_caches(app: Flask) -> None:
    user = UserFactory(username="public", display_name="Pat Public", bio="Hello")
    anon = app.test_client()
    first = anon.get("/u/public")
    assert first.status_code == 200
    # Without an explicit Cache-Control a shared cache applies its own lifetime and keeps
    # serving the profile after the account is disabled; "no-cache" makes it ask each time.
    assert first.headers["Cache-Control"] == "no-cache"
    assert "Cookie" in first.headers["Vary"]
    assert first.headers.get("ETag")
    db.session.get(User, user.id).disabled_at = utcnow()
    db.session.commit()
    again = anon.get("/u/public", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 404


@pytest.mark.asvs("V14.3.2")
def test_signed_in_profile_views_are_not_stored(app: Flask) -> None:
    # The owner and admins see the role badge: such a page must never reach a shared cache.
    owner = UserFactory(username="owner", role_name="editor")
    for viewer in (owner, UserFactory(role_name="admin"), UserFactory()):
        resp = client_for(app, viewer).get("/u/owner")
        assert resp.status_code == 200
        assert resp.headers["Cache-Control"] == "no-store"
