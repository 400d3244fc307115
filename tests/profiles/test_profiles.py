"""Public profiles: sanitised bio, initials avatar, only published articles."""

from __future__ import annotations

import pytest
from flask import Flask

from bastion.extensions import db
from bastion.models import User, utcnow
from bastion.profiles.services import ProfileError, clean_profile, initials_avatar, update_profile
from tests.factories import ArticleFactory, UserFactory
from tests.support.roles import client_for
from tests.uploads import corpus
from tests.uploads.conftest import AVATAR, only_upload, post_file


@pytest.mark.asvs("V1.2.1", "V1.3.1", "V1.3.5")
def test_profile_shows_sanitised_bio_and_initials_avatar(app: Flask) -> None:
    user = UserFactory(
        username="ada",
        display_name="Ada Lovelace",
        bio="**Engines** <script>alert(1)</script> [x](javascript:alert(1))",
    )
    html = client_for(app).get("/u/ada").get_data(as_text=True)
    assert '<h1 id="profile-name">Ada Lovelace</h1>' in html
    assert "<strong>Engines</strong>" in html
    assert "<script>alert" not in html
    assert 'href="javascript' not in html
    assert '<svg class="avatar"' in html
    assert ">AL</text>" in html
    assert initials_avatar(user).initials == "AL"


@pytest.mark.asvs("V1.3.5", "V3.5.3")
def test_bio_images_cannot_make_a_visitor_request_other_pages(app: Flask) -> None:
    # Any reader writes a bio; an admin who opens the profile must not run the audit export.
    upload = "/uploads/" + "ab" * 16
    UserFactory(
        username="mallory",
        bio=f"![](/admin/audit.csv?since=0001-01-01) ![me]({upload}?size=256)",
    )
    html = client_for(app, UserFactory(role_name="admin")).get("/u/mallory").get_data(as_text=True)
    assert "audit.csv" not in html
    assert f'<img src="{upload}?size=256" alt="me">' in html


def test_uploaded_avatar_is_used_when_present(app: Flask) -> None:
    UserFactory(username="pic", avatar_id="abc123")
    html = client_for(app).get("/u/pic").get_data(as_text=True)
    assert '<img class="avatar" src="/uploads/abc123"' in html


@pytest.mark.asvs("V8.2.2")
def test_profile_lists_only_published_articles(app: Flask) -> None:
    author = UserFactory(role_name="editor", username="writer")
    ArticleFactory(author=author, title="Out in the open")
    ArticleFactory(author=author, title="Hidden draft", status="draft", published_at=None)
    html = client_for(app).get("/u/writer").get_data(as_text=True)
    assert "Out in the open" in html
    assert "Hidden draft" not in html
    empty = client_for(app).get(f"/u/{UserFactory().username}").get_data(as_text=True)
    assert "has not published anything yet." in empty


def test_disabled_accounts_have_no_public_page(app: Flask) -> None:
    UserFactory(username="gone", disabled_at=utcnow())
    assert client_for(app).get("/u/gone").status_code == 404


@pytest.mark.asvs("V8.2.2")
@pytest.mark.parametrize("hide", ["disabled", "unconfirmed"])
def test_a_photo_is_hidden_with_its_profile(app: Flask, hide: str) -> None:
    """Whatever takes the profile page down (a disabled account, an address never or no
    longer confirmed) takes the photo down with it."""
    user = UserFactory(role_name="viewer")
    owner = client_for(app, user)
    assert post_file(owner, AVATAR, corpus.png()).status_code == 302
    photo = f"/uploads/{only_upload().id}"
    assert app.test_client().get(photo).status_code == 200
    if hide == "disabled":
        db.session.get(User, user.id).disabled_at = utcnow()
    else:
        db.session.get(User, user.id).email_confirmed_at = None
    db.session.commit()
    assert app.test_client().get(f"/u/{user.username}").status_code == 404
    someone = client_for(app, UserFactory(role_name="editor"))
    for visitor in (app.test_client(), someone):
        assert visitor.get(photo).status_code == 404
        assert visitor.get(f"{photo}?size=64").status_code == 404


@pytest.mark.asvs("V2.2.1")
@pytest.mark.parametrize(
    ("name", "bio", "field"),
    [
        ("x" * 81, "", "display_name"),
        ("ok", "x" * 2001, "bio"),
        ("a\x00b", "", "display_name"),
        ("ok", "a\x00", "bio"),
        ("right\u202eleft", "", "display_name"),
    ],
)
def test_bad_profile_values_are_refused(app: Flask, name: str, bio: str, field: str) -> None:
    user = UserFactory(display_name="Before")
    with pytest.raises(ProfileError) as caught:
        update_profile(user, display_name=name, bio=bio)
    assert caught.value.field == field
    from bastion.extensions import db

    db.session.expire_all()
    assert db.session.get(type(user), user.id).display_name == "Before"


def test_profile_values_are_normalised() -> None:
    assert clean_profile("  Ada  ", "line\r\nnext") == ("Ada", "line\nnext")


@pytest.mark.asvs("V8.2.3")
def test_a_role_is_shown_only_to_its_holder_and_to_admins(app: Flask) -> None:
    """A public role badge listed the site's admins for anyone looking for a target."""
    boss = UserFactory(username="boss", role_name="admin")
    badge = '<span class="badge">admin</span>'
    assert badge not in client_for(app).get("/u/boss").get_data(as_text=True)
    reader = client_for(app, UserFactory(username="reader"))
    assert badge not in reader.get("/u/boss").get_data(as_text=True)
    assert badge in client_for(app, boss).get("/u/boss").get_data(as_text=True)
    other_admin = client_for(app, UserFactory(username="other", role_name="admin"))
    assert badge in other_admin.get("/u/boss").get_data(as_text=True)
