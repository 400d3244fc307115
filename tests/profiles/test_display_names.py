"""Display names chosen by a hostile member: passing for staff, or drawing nothing.

Bylines and comments print the display name with the author's @username, so another
member's name cannot sign for them; a staff title in the name still could, and a name that
draws nothing hides who wrote. Non-ASCII characters are written as escapes (ASCII-only
sources).
"""

from __future__ import annotations

import re

import pytest
from flask import Flask

from bastion.extensions import db
from bastion.models import User
from bastion.profiles.services import update_profile
from tests.factories import ArticleFactory, CommentFactory, UserFactory
from tests.support.accounts import refused_display_name
from tests.support.roles import client_for


@pytest.mark.asvs("V2.2.1", "V8.2.3")
@pytest.mark.parametrize(
    "name",
    [
        "Admin",
        "ADM1N",
        "Administrator",
        "Bastion team",
        "Mallory (admin)",
        "st\u0430ff",  # Cyrillic a
        "\uff41\uff44\uff4d\uff49\uff4e",  # full-width letters
        "Moderator",
    ],
)
def test_a_name_that_reads_as_staff_is_refused(app: Flask, name: str) -> None:
    mallory = UserFactory(username="mallory", display_name="Before")
    assert "staff" in refused_display_name(name, mallory)


@pytest.mark.parametrize(
    "name",
    [
        "alice",  # another member's username: bylines add the @username
        "Alice Liddell",
        "\u0410\u043b\u0438\u0441\u0430",  # Cyrillic
        "Administration fan",
        "Jane Stafford",
        "",
    ],
)
def test_other_names_are_kept(app: Flask, name: str) -> None:
    UserFactory(username="alice")
    mallory = UserFactory(username="mallory", display_name="Before")
    update_profile(mallory, display_name=name, bio="")
    db.session.expire_all()
    assert db.session.get(User, mallory.id).display_name == name


def test_admins_may_call_themselves_admin(app: Flask) -> None:
    boss = UserFactory(role_name="admin", display_name="Before")
    update_profile(boss, display_name="Site admin", bio="")
    assert boss.display_name == "Site admin"


@pytest.mark.asvs("V8.2.3")
def test_bylines_name_the_account_behind_a_borrowed_name(app: Flask) -> None:
    UserFactory(username="alice", display_name="Alice")
    mallory = UserFactory(username="mallory", display_name="Alice")
    article = ArticleFactory(author=mallory, title="Send me your password")
    CommentFactory(article=article, author=mallory, body="Really.")
    client = client_for(app)
    for page in ("/", "/articles", f"/articles/{article.id}"):
        html = client.get(page).get_data(as_text=True)
        assert "@mallory" in html, page
        assert "@alice" not in html, page


@pytest.mark.asvs("V8.2.3")
def test_a_right_to_left_name_cannot_move_the_handle_beside_it(app: Flask) -> None:
    """Right-to-left letters at the end of a display name would pull the neutral " @" after
    them into their run; the name is isolated, so the handle reads as written."""
    mallory = UserFactory(username="mallory", display_name="Alice \u05d0\u05d1")
    article = ArticleFactory(author=mallory, title="Signed")
    CommentFactory(article=article, author=mallory, body="Signed too.")
    client = client_for(app)
    for page in ("/", "/articles", f"/articles/{article.id}"):
        html = client.get(page).get_data(as_text=True)
        bylines = re.findall(r"<bdi>Alice \u05d0\u05d1</bdi>(?:</a>)? <span class=\"handle\">@mallory<", html)
        assert bylines, page


@pytest.mark.asvs("V2.2.1")
@pytest.mark.parametrize(
    "name",
    [
        "\u3164",  # Hangul filler: a letter that draws nothing
        "\u2800",  # Braille blank
        "Al\u115fice",
        "x\u2028y",  # line separator
        "x\u2029y",  # paragraph separator
        "\ue000",  # private use
        # Marks and selectors that draw nothing alone: allowed beside letters, never alone.
        "\u034f",  # combining grapheme joiner
        "\ufe0f\ufe0f",  # variation selectors
        " \u17b4 ",  # Khmer inherent vowel, between spaces
        "\U000e0100",  # variation selector supplement
    ],
)
def test_names_that_draw_nothing_or_break_the_line_are_refused(app: Flask, name: str) -> None:
    refused_display_name(name)


@pytest.mark.asvs("V2.2.1")
def test_the_api_refuses_a_name_that_draws_nothing(app: Flask) -> None:
    """A name of a lone U+034F passed both the schema and the service: the profile's heading,
    its initials and every byline then showed nothing where the name goes."""
    from bastion.api import tokens

    user = UserFactory(display_name="Before")
    secret = tokens.issue_pair(user).access_token
    for name in ("\u034f", "\u034f\u034f \ufe0f"):
        resp = app.test_client().patch(
            "/api/v1/me", json={"display_name": name}, headers={"Authorization": f"Bearer {secret}"}
        )
        assert resp.status_code == 422, resp.get_json()
        assert resp.get_json()["errors"][0]["loc"][-1] == "display_name"
    for name in ("", "   ", "Ada\u034f", "\u2764\ufe0f"):  # empty means "use my username"
        resp = app.test_client().patch(
            "/api/v1/me", json={"display_name": name}, headers={"Authorization": f"Bearer {secret}"}
        )
        assert resp.status_code == 200, (ascii(name), resp.get_json())


@pytest.mark.parametrize(
    "name",
    [
        "Nguy\u1ec5n V\u0103n A",  # Vietnamese
        "\u0e17\u0e35\u0e48\u0e19\u0e35\u0e48",  # Thai, two marks on a letter
        "\u0928\u093f\u0915\u094d\u0937\u093e",  # Devanagari
        "\u2764\ufe0f Ana",  # an emoji with its presentation selector
    ],
)
def test_real_scripts_are_kept(app: Flask, name: str) -> None:
    user = UserFactory(display_name="Before")
    update_profile(user, display_name=name, bio="")
    assert user.display_name


def test_a_disabled_authors_byline_links_to_no_profile(app: Flask) -> None:
    # Their profile answers 404; bylines linked to it all the same.
    from bastion.models import utcnow

    gone = UserFactory(username="gone", display_name="Gone Away")
    article = ArticleFactory(author=gone, title="Still published")
    CommentFactory(article=article, author=gone, body="A comment")
    gone.disabled_at = utcnow()
    db.session.commit()
    client = client_for(app)
    for page in ("/articles", f"/articles/{article.id}"):
        html = client.get(page).get_data(as_text=True)
        assert "Gone Away" in html and "@gone" in html, page
        assert 'href="/u/gone"' not in html, page
    assert client.get("/u/gone").status_code == 404
    kept = UserFactory(username="kept")
    ArticleFactory(author=kept, title="By an active author")
    assert 'href="/u/kept"' in client.get("/articles").get_data(as_text=True)
