"""A profile's list of articles, a page at a time."""

from __future__ import annotations

import pytest
from flask import Flask

from tests.factories import ArticleFactory, UserFactory
from tests.support.roles import client_for


@pytest.mark.asvs("V2.2.1")
def test_a_profile_page_past_the_end_says_so_and_leads_to_the_last_one(app: Flask) -> None:
    """/u/ada?page=9 said "Ada has not published anything yet." of an author with 21
    published articles (20 a page), as /articles once did of the whole site."""
    ada = UserFactory(username="ada", display_name="Ada", role_name="editor")
    ArticleFactory.create_batch(21, author=ada)
    html = client_for(app).get("/u/ada?page=9").get_data(as_text=True)
    assert "has not published anything yet" not in html
    assert "There is no page 9 of <bdi>Ada</bdi>\u2019s articles." in html
    assert 'href="/u/ada?page=2"' in html
    single = UserFactory(username="bob", display_name="Bob", role_name="editor")
    ArticleFactory(author=single)
    html = client_for(app).get("/u/bob?page=3").get_data(as_text=True)
    assert "There is no page 3 of <bdi>Bob</bdi>\u2019s articles." in html
    assert 'href="/u/bob"' in html


@pytest.mark.asvs("V1.1.1")
def test_a_right_to_left_name_is_isolated_in_the_sentences_about_it(app: Flask) -> None:
    """A Hebrew or Arabic display name inside "There is no page 9 of ...'s articles" took the
    possessive and the page number along into its own direction; bylines already isolate
    names (``<bdi>``)."""
    UserFactory(username="dan", display_name="דן", role_name="editor")
    html = client_for(app).get("/u/dan").get_data(as_text=True)
    assert "<bdi>דן</bdi> has not published anything yet." in html



@pytest.mark.parametrize("spelling", ["Ada", "ADA", "\uff41\uff44\uff41"])
def test_other_spellings_of_a_username_redirect_to_the_one_profile_address(
    app: Flask, spelling: str
) -> None:
    """One page, one address: /u/Ada and full-width letters were copies of /u/ada."""
    UserFactory(username="ada")
    client = client_for(app)
    resp = client.get(f"/u/{spelling}?page=2")
    assert resp.status_code == 301
    assert resp.headers["Location"] == "/u/ada?page=2"
    assert client.get(f"/u/{spelling}").headers["Location"] == "/u/ada"
    assert client.get("/u/ada").status_code == 200
