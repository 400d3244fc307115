"""What the pages tell a newcomer and a regular user: where to go next, and nothing untrue.

Each test is a page a person walking through the site found misleading or a dead end."""

from __future__ import annotations

import io
import re
from collections.abc import Callable

from flask import Flask

from tests.factories import ArticleFactory, UserFactory
from tests.support.auth import csrf_token
from tests.support.roles import client_for

REGISTER_BUTTON = re.compile(r'<a class="button" href="/auth/register">([^<]+)</a>')


def test_the_home_page_invites_a_newcomer_to_an_account_not_to_writing(app: Flask) -> None:
    """"Start writing" led to a sign-up whose account (a viewer) cannot write."""
    page = client_for(app).get("/").get_data(as_text=True)
    # The header's button and the page's own say the same thing.
    assert REGISTER_BUTTON.findall(page) == ["Create account", "Create account"]
    assert "Start writing" not in page


def test_an_empty_site_tells_a_signed_in_viewer_who_writes(app: Flask) -> None:
    """A viewer was told editors write "once they sign in", while signed in already."""
    page = client_for(app, UserFactory()).get("/").get_data(as_text=True)
    assert "Nothing has been published yet." in page
    assert "once they sign in" not in page
    assert "an admin decides who is one" in page
    editor = client_for(app, UserFactory(role_name="editor")).get("/").get_data(as_text=True)
    assert "Write the first article" in editor and "an admin decides" not in editor


def test_the_account_page_tells_a_viewer_what_the_role_allows(app: Flask) -> None:
    viewer = client_for(app, UserFactory()).get("/account").get_data(as_text=True)
    assert "As a viewer you read and comment. Editors also write articles" in viewer
    editor = client_for(app, UserFactory(role_name="editor")).get("/account")
    assert "As a viewer" not in editor.get_data(as_text=True)


def test_a_dead_link_names_each_links_configured_lifetime_and_way_out(
    make_app: Callable[..., Flask],
) -> None:
    """The page said "password reset links after one hour" whatever RESET_MINUTES was, and
    offered only a new reset link to someone whose account confirmation link had expired."""
    app = make_app(RESET_MINUTES=30, CONFIRM_HOURS=12, EMAIL_CHANGE_HOURS=6)
    client = app.test_client()
    for dead in ("/auth/reset/not-a-token", "/auth/confirm/not-a-token"):
        resp = client.get(dead)
        page = resp.get_data(as_text=True)
        assert resp.status_code == 404
        assert "one hour" not in page
        assert "A password reset link lasts 30 minutes" in page
        assert "confirmation link lasts 12 hours" in page
        assert "link lasts 6 hours: sign in" in page
        assert 'href="/auth/register">Create account</a>' in page
        assert 'href="/auth/reset">Request a new reset link</a>' in page


def test_a_refused_article_image_leads_back_to_the_article(app: Flask) -> None:
    """A refused upload from the edit page lands on the images page, which had no way back
    to the article or its editor."""
    article = ArticleFactory()
    client = client_for(app, article.author)
    page = f"/articles/{article.id}/images"
    resp = client.post(page, data={
        "csrf_token": csrf_token(client, f"/articles/{article.id}/edit"),
        "image": (io.BytesIO(b"not an image at all"), "notes.png", "image/png"),
    }, content_type="multipart/form-data")
    assert 400 <= resp.status_code < 500
    html = resp.get_data(as_text=True)
    assert f'href="/articles/{article.id}/edit">Back to editing the article</a>' in html
    assert f'href="/articles/{article.id}">View the article</a>' in html


def test_the_photo_page_links_to_the_profile_it_changes(app: Flask) -> None:
    user = UserFactory(username="photographer")
    page = client_for(app, user).get("/account/avatar").get_data(as_text=True)
    assert 'href="/u/photographer">public profile page</a>' in page
    assert 'href="/account">your account page</a>' in page


def test_the_reset_request_says_how_long_the_configured_link_lasts(
    make_app: Callable[..., Flask],
) -> None:
    """The message after asking for a reset said "one hour" whatever RESET_MINUTES was."""
    client = client_for(make_app(RESET_MINUTES=30))
    sent = client.post("/auth/reset", data={"csrf_token": csrf_token(client, "/auth/reset"),
                                            "email": "no@example.org"}, follow_redirects=True)
    assert "The link works for 30 minutes." in sent.get_data(as_text=True)


HEADER = re.compile(r"<header.*?</header>", re.S)
HREF = re.compile(r'<a [^>]*href="([^"]+)"')


def test_an_admin_still_to_enrol_is_offered_the_enrolment_step_alone(app: Flask) -> None:
    """Until 2FA is on, every page but its set-up leads back there; the header still
    offered Home, Articles, Write, Account and Admin, each a link back to where they were."""
    client = client_for(app, UserFactory(role_name="admin", two_factor=False))
    for page in ("/account/2fa", "/auth/reauth"):  # the pages such an account may open
        html = client.get(page).get_data(as_text=True)
        header = HEADER.search(html)
        assert header, page
        assert HREF.findall(header[0]) == ["/account/2fa"], page
        assert ">Set up two-factor authentication</a>" in header[0]
        assert ">Sign out</button>" in header[0]
    assert client.get("/account/2fa").status_code == 200
    setup = client.get("/account/2fa").get_data(as_text=True)
    assert ("Your role requires two-factor authentication. The rest of the site, the admin "
            "area included, opens once it is on: finish these steps to continue.") in setup
    # Enrolled, the whole header is back.
    enrolled = client_for(app, UserFactory(role_name="admin")).get("/account")
    links = HREF.findall(HEADER.search(enrolled.get_data(as_text=True))[0])  # type: ignore[index]
    assert links == ["/", "/", "/articles", "/articles/new", "/account", "/admin/users"]
