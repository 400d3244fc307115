"""Display names that draw over the page around them. Non-ASCII text is written as escapes."""

from __future__ import annotations

import unicodedata

import pytest
from flask import Flask

from bastion.extensions import db
from bastion.models import User
from bastion.profiles.services import ProfileError, update_profile
from tests.factories import UserFactory
from tests.support.accounts import refused_display_name

# "Zalgo" text: one letter carrying a tall stack of combining marks (strokes, tildes, the
# enclosing Cyrillic millions sign) that draws over the lines above and below it.
STACK = "\u0336\u0334\u0303\u0489\u0352"


@pytest.mark.asvs("V2.2.1", "V1.3.3")
@pytest.mark.parametrize(
    "name",
    [
        "Z" + STACK * 12,
        "Mallory " + "x" + STACK,
        "A\u20dd\u20dd\u20dd\u20dd\u20dd",  # enclosing circles, one inside the other
    ],
    ids=["tower", "five-marks", "enclosing"],
)
def test_a_name_with_stacked_marks_is_refused(app: Flask, name: str) -> None:
    assert "at most 4 accents or marks on one letter" in refused_display_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "x" + STACK[:4],  # four marks on a letter are still allowed
        "\u05e9\u05c1\u05bc\u05b8\u05c1\u05dd",  # Hebrew: shin with dots and a vowel point
        "\u0f56\u0f66\u0f92\u0fb2\u0f74\u0f56",  # Tibetan: a stacked syllable
        "1\ufe0f\u20e3 Ana",  # a keycap emoji: selector and enclosing keycap
    ],
)
def test_names_with_a_few_marks_per_letter_are_kept(app: Flask, name: str) -> None:
    user = UserFactory(display_name="Before")
    update_profile(user, display_name=name, bio="")
    assert user.display_name


def test_the_api_refuses_a_stacked_name_with_the_same_message(app: Flask) -> None:
    from bastion.api import tokens

    user = UserFactory(display_name="Before")
    secret = tokens.issue_pair(user).access_token
    resp = app.test_client().patch(
        "/api/v1/me",
        json={"display_name": "Z" + STACK * 12},
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert resp.status_code == 422, resp.get_json()
    assert "accents or marks" in resp.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(User, user.id).display_name == "Before"


@pytest.mark.asvs("V2.2.1", "V1.3.3")
def test_a_bio_with_a_tower_of_marks_is_refused_but_real_scripts_pass(app: Flask) -> None:
    user = UserFactory(display_name="Before", bio="Old bio")
    with pytest.raises(ProfileError) as caught:
        update_profile(user, display_name="Before", bio="Hi " + "Z" + STACK * 4)
    assert caught.value.field == "bio"
    assert "at most 8 accents or marks on one letter" in str(caught.value)
    db.session.expire_all()
    assert db.session.get(User, user.id).bio == "Old bio"
    # Pointed Hebrew with cantillation and a Sanskrit stack in Tibetan script.
    real = "\u05d1\u05bc\u05b0\u05e8\u05b5\u05d0\u05e9\u05c1\u05b4\u0596\u05d9\u05ea \u0f67\u0f92\u0fb7\u0fb1\u0fb2\u0f7a"
    update_profile(user, display_name="Before", bio=real)
    assert user.bio == unicodedata.normalize("NFC", real)  # marks in canonical order


@pytest.mark.asvs("V2.2.2", "V2.2.1")
@pytest.mark.parametrize(
    "bio",
    [
        "Hi\x1b[2J\x1b[31mI am the admin",  # a terminal's clear-screen and colour
        "bell\x07 and backspace\x08",
        "vertical\x0btab and form\x0cfeed",
        "C1: next line\x85 and CSI\x9b",
        "delete\x7f",
    ],
    ids=["ansi", "bell", "vt-ff", "c1", "del"],
)
def test_the_api_refuses_the_bio_controls_the_page_refuses(app: Flask, bio: str) -> None:
    """The account page refused control characters in a bio, but the rule lived only in
    the form: PATCH /api/v1/me, which says it follows "the same profile rules as the page",
    stored them on the public profile. The service now refuses them for both, as it does in
    article bodies and comments (line breaks and tabs stay)."""
    from bastion.api import tokens

    user = UserFactory(display_name="Before", bio="Old bio")
    secret = tokens.issue_pair(user).access_token
    resp = app.test_client().patch(
        "/api/v1/me", json={"bio": bio}, headers={"Authorization": f"Bearer {secret}"}
    )
    assert resp.status_code == 422, resp.get_json()
    assert resp.mimetype == "application/problem+json"
    assert resp.get_json()["errors"][0]["loc"] == ["bio"]
    db.session.expire_all()
    assert db.session.get(User, user.id).bio == "Old bio"
    with pytest.raises(ProfileError) as caught:
        update_profile(user, display_name="Before", bio=bio)
    assert caught.value.field == "bio"


def test_a_bio_keeps_its_line_breaks_and_tabs(app: Flask) -> None:
    user = UserFactory(display_name="Before")
    update_profile(user, display_name="Before", bio="one\r\ntwo\rthree\n\tindented")
    assert user.bio == "one\ntwo\nthree\n\tindented"


@pytest.mark.asvs("V1.1.1", "V2.2.1")
def test_a_bio_within_the_limit_is_saved_whatever_its_line_breaks(app: Flask) -> None:
    """Browsers send a textarea's line breaks as CRLF: the form counted each as two
    characters where the service stores and counts one, and refused a bio of many short
    lines within BIO_MAX (and one kept from before could not be saved again)."""
    from bastion.profiles.services import BIO_MAX
    from tests.support.roles import client_for, post

    bio = "A line about me.\n" * (BIO_MAX // 17)
    assert len(bio) <= BIO_MAX < len(bio.replace("\n", "\r\n"))
    user = UserFactory(display_name="Ada")
    resp = post(client_for(app, user), "/account/profile",
                {"display_name": "Ada", "bio": bio.replace("\n", "\r\n")})
    assert resp.status_code == 302, resp.get_data(as_text=True)[:2000]
    db.session.expire_all()
    assert db.session.get(User, user.id).bio == bio


@pytest.mark.asvs("V2.2.1", "V8.2.3")
@pytest.mark.parametrize(
    "name",
    [
        "\u13aadmin",  # Cherokee A, drawn as a Latin A
        "\uab7admin",  # its small form, which case folding turns back into the capital
        "\ua4ee\ua4d3\ua4df\ua4f2\ua4e0",  # Lisu letters, made from Latin capitals
        "\u1d00\u1d05\u1d0d\u026a\u0274",  # Latin small capitals
        "M\u0585derator",  # Armenian o
        "\u2c80dmin",  # Coptic A
        "\U0001f170\U0001f173\U0001f17c\U0001f178\U0001f17d",  # negative squared letters
        "AdminTeam",
        "BastionSupport",
    ],
    ids=["cherokee", "cherokee-small", "lisu", "small-caps", "armenian", "coptic",
         "squared", "camel-case", "camel-case-site"],
)
def test_other_lookalikes_of_a_staff_name_are_refused(app: Flask, name: str) -> None:
    assert "staff" in refused_display_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "\u13e3\u13b3\u13a9",  # Tsalagi, "Cherokee" in Cherokee
        "\u0531\u0580\u0561\u0574",  # Aram, in Armenian
        "\ua4e0\ua4f2 \ua4e1\ua4f3",  # Lisu words that spell no staff word
        "McDonald",
        "JoAnn Stafford",
        "\U0001f170 team",  # a squared A alone is no staff word
    ],
)
def test_names_in_those_scripts_and_cases_are_kept(app: Flask, name: str) -> None:
    user = UserFactory(display_name="Before")
    update_profile(user, display_name=name, bio="")
    db.session.expire_all()
    assert db.session.get(User, user.id).display_name == name
