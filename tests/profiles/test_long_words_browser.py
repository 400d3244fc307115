"""A member's very long word (display name, bio link) must not widen the pages it is on.

An 80-character display name and a 1,500-character bio word made the profile page 14,000
pixels wide and pushed bylines off a phone's screen, taking the site's navigation with it.
"""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.browser

WIDTHS = "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"


@pytest.mark.asvs("V1.2.1")
def test_long_names_and_bios_wrap_instead_of_widening_the_page(
    live_server: Any, page: Any
) -> None:
    from bastion.extensions import db
    from tests.factories import ArticleFactory, CommentFactory, UserFactory

    live = live_server()
    with live.app.app_context():
        author = UserFactory(username="longname", role_name="editor", display_name="W" * 80,
                             bio="x" * 1500 + "\n\nhttps://example.org/" + "a" * 300)
        article = ArticleFactory(author=author, title="T" * 200)
        CommentFactory(article=article, author=author)
        db.session.commit()
        paths = ["/u/longname", f"/articles/{article.id}", "/articles", "/"]
    browser_page, _watch = page
    browser_page.set_viewport_size({"width": 390, "height": 800})
    for path in paths:
        browser_page.goto(live.url + path)
        scroll_width, client_width = browser_page.evaluate(WIDTHS)
        assert scroll_width <= client_width, (path, scroll_width)
