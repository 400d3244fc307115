"""In Chromium: what a form does with what is typed into it, and where its answer shows.

A password field must take every character typed or pasted (the server, not the browser,
says when one is too long), and a refused form must be seen where it was written.
"""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.browser

# 70 characters (the server allows 128), but 140 UTF-16 units: what ``maxlength`` counts.
EMOJI_PASSWORD = "\U0001f99c" * 70
# 140 characters: one a password manager may well generate, refused with a message.
TOO_LONG = ("a quiet river runs under the old stone bridge " * 4)[:140]


@pytest.mark.asvs("V6.2.8", "V6.2.7")
def test_password_fields_keep_every_character_typed(live_server: Any, page: Any) -> None:
    """``maxlength`` on a password input made Chromium drop, without a word, whatever came
    past it: an account whose password the server accepts (70 emoji, set at registration
    elsewhere or from the command line) could not sign in, and a long password was cut at
    registration, then refused as "do not match" against its untruncated repeat."""
    from bastion.security.passwords import hash_password
    from tests.factories import UserFactory

    live = live_server()
    with live.app.app_context():
        username = UserFactory(password_hash=hash_password(EMOJI_PASSWORD)).username
    pg, watch = page
    pg.goto(live.url + "/auth/login")
    pg.fill("#username", username)
    pg.fill("#password", EMOJI_PASSWORD)
    assert pg.input_value("#password") == EMOJI_PASSWORD
    pg.get_by_role("button", name="Sign in", exact=True).click()
    pg.wait_for_load_state()
    assert pg.get_by_role("button", name="Sign out", exact=True).count() == 1, "the password was cut"
    # The new-password fields of the account page take it whole too.
    pg.goto(live.url + "/account")
    for field in ("#current", "#password", "#confirm"):
        pg.fill(field, TOO_LONG)
        assert pg.input_value(field) == TOO_LONG, field
    pg.get_by_role("button", name="Sign out", exact=True).click()
    pg.wait_for_load_state()

    # Too long: the live hint and then the server say so; nothing is cut or stored.
    pg.goto(live.url + "/auth/register")
    pg.fill("#username", "riverside")
    pg.fill("#email", "riverside@example.org")
    pg.fill("#password", TOO_LONG)
    pg.fill("#confirm", TOO_LONG)
    assert "12 too many" in pg.inner_text("#password-live")
    pg.get_by_role("button", name="Create account").click()
    pg.wait_for_load_state()
    assert "at most 128 characters" in pg.inner_text("#password-error")
    assert pg.locator("#confirm-error").count() == 0  # not "The passwords do not match."
    assert watch.csp_violations == [] and watch.dialogs == []


def test_a_refused_comment_is_shown_where_it_was_written(live_server: Any, page: Any) -> None:
    """An empty comment under a long article came back as the article's first screen,
    titled as the article: the message stood a long scroll below, so the page looked as
    if the comment had been posted. The account page on a phone was the same for its
    lower forms (a wrong current password). And the sessions table's last header, meant
    for screen readers only, was printed as "ACTION" (its class lives in pages.css, which
    the account page does not load)."""
    from tests.factories import ArticleFactory, UserFactory
    from tests.support.browser import sign_in

    live = live_server()
    with live.app.app_context():
        article = ArticleFactory(body_html="<p>A paragraph of a long article.</p>" * 120)
        username, article_id = UserFactory().username, article.id
    pg, watch = page
    sign_in(pg, live.url, username)
    pg.goto(f"{live.url}/articles/{article_id}")
    pg.get_by_role("button", name="Post comment").click()
    pg.wait_for_load_state()
    assert pg.title().startswith("Error: "), pg.title()
    error = pg.locator("#body-error")
    assert error.count() == 1 and error.evaluate(
        "(el) => { const r = el.getBoundingClientRect(); return r.top >= 0 && r.bottom <= innerHeight; }"
    ), "the refusal is out of sight"
    assert "body-error" in pg.get_attribute("#body", "aria-describedby").split()

    # On a phone the account page's forms stand screens apart: a refused one is named at
    # the top, which is what shows on arrival.
    pg.set_viewport_size({"width": 375, "height": 740})
    pg.goto(f"{live.url}/account")
    pg.fill("#current", "not my password at all")
    pg.fill("#password", "a new passphrase of five words")
    pg.fill("#confirm", "a new passphrase of five words")
    pg.get_by_role("button", name="Change password").click()
    pg.wait_for_load_state()
    assert pg.title().startswith("Error: ")
    alert = pg.locator("main [role=alert]")
    assert alert.count() == 1 and alert.evaluate(
        "(el) => el.getBoundingClientRect().bottom <= innerHeight"), "no refusal in sight"
    alert.get_by_role("link", name="Password").click()
    assert pg.locator("#current-error").is_visible()
    assert pg.locator("#current-error").evaluate(
        "(el) => { const r = el.getBoundingClientRect(); return r.top >= 0 && r.bottom <= innerHeight; }")
    hidden = pg.locator("table[aria-labelledby=sessions-h] th .visually-hidden")
    assert hidden.count() == 1  # this browser's session is listed
    box = hidden.bounding_box()
    assert box is not None and box["width"] <= 1 and box["height"] <= 1, box
    assert watch.csp_violations == []


def test_a_refused_article_keeps_warning_before_its_text_is_lost(
    live_server: Any, page: Any
) -> None:
    """The editor warns before typed text is lost, but a save the server refused (no
    title, an edit conflict) came back as a fresh page: the text in it, saved nowhere,
    went with the next click on "Cancel", a link or "Upload image", without a word."""
    from tests.factories import ArticleFactory, UserFactory
    from tests.support.browser import sign_in

    live = live_server()
    with live.app.app_context():
        editor = UserFactory(role_name="editor")
        username, article_id = editor.username, ArticleFactory(author=editor).id
    # A page of its own: it answers the question itself (the shared one dismisses all).
    pg = page[0].context.new_page()
    dialogs: list[str] = []
    pg.on("dialog", lambda dialog: (dialogs.append(dialog.type), dialog.dismiss()))
    sign_in(pg, live.url, username)
    pg.goto(f"{live.url}/articles/{article_id}/edit")
    pg.fill("#title", "")
    pg.fill("#body", "An hour of writing, not saved yet.")
    pg.get_by_role("button", name="Save changes").click()
    pg.wait_for_load_state()
    assert pg.title().startswith("Error: ")
    pg.get_by_role("link", name="Cancel").click()
    pg.wait_for_timeout(300)
    assert dialogs == ["beforeunload"]
    assert pg.url.endswith(f"/articles/{article_id}/edit")  # stayed: the text is still here
    assert pg.input_value("#body") == "An hour of writing, not saved yet."


def test_a_form_refused_by_a_rate_limit_says_the_text_is_one_back_away(
    live_server: Any, page: Any
) -> None:
    """The limit answers before the view, so no form comes back with the text in it; the
    page says where it is, and the browser's Back button does return it (the form page is
    no-store, yet Chromium restores what was typed)."""
    from tests.factories import ArticleFactory, UserFactory
    from tests.support.browser import sign_in

    live = live_server(COMMENT_WRITE_RATE_LIMIT="1 per minute")
    with live.app.app_context():
        reader, article = UserFactory(role_name="viewer").username, ArticleFactory().id
    pg, watch = page
    pg.context.clear_cookies()
    sign_in(pg, live.url, reader)
    pg.goto(f"{live.url}/articles/{article}")
    text = "A second thought, longer than the first, that I would hate to type again."
    for body in ("A first thought.", text):
        pg.fill("#body", body)
        pg.get_by_role("button", name="Post comment").click()
        pg.wait_for_load_state()
    assert "Too many requests" in pg.inner_text("main")
    assert "Back button returns to the form" in pg.inner_text("main")
    # The page comes back from the back/forward cache (no "load" then), shown once the
    # server says the session still lives (history-guard.js).
    pg.go_back(wait_until="commit")
    pg.wait_for_function("() => !document.documentElement.hidden && document.querySelector('#body')")
    assert pg.locator("#body").is_visible()
    assert pg.input_value("#body") == text
    assert watch.csp_violations == []
