"""In Chromium: destructive buttons ask first, and the editor warns before typed text is lost."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.browser


def test_deleting_asks_first_and_leaving_the_editor_keeps_unsent_text(
    live_server: Any, page: Any
) -> None:
    """Uploading an image reloads the editor: the text being written was lost without a
    word. Deleting an article was one click."""
    from bastion.extensions import db
    from bastion.models import Article
    from tests.factories import ArticleFactory, UserFactory
    from tests.support.browser import sign_in
    from tests.uploads import corpus

    live = live_server()
    with live.app.app_context():
        editor = UserFactory(role_name="editor")
        article = ArticleFactory(author=editor, title="Kept", body_md="Old body.")
        username, article_id = editor.username, article.id
    # A page of our own: the shared fixture dismisses every dialog, and this test must
    # answer them itself (console errors, CSP reports included, are collected here too).
    pg = page[0].context.new_page()
    errors: list[str] = []
    pg.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    base = live.url
    sign_in(pg, base, username)

    dialogs: list[tuple[str, str]] = []
    answer = {"accept": False}

    def on_dialog(dialog: Any) -> None:
        dialogs.append((dialog.type, dialog.message))
        dialog.accept() if answer["accept"] else dialog.dismiss()

    pg.on("dialog", on_dialog)

    # Typed but unsent: choosing an image and uploading it asks before the page goes.
    pg.goto(f"{base}/articles/{article_id}/edit")
    pg.fill("#body", "A long draft that must not vanish.")
    pg.set_input_files("#article-image", {"name": "a.png", "mimeType": "image/png",
                                          "buffer": corpus.png()})
    pg.get_by_role("button", name="Upload image").click()
    pg.wait_for_timeout(300)
    assert [kind for kind, _ in dialogs] == ["beforeunload"]
    assert pg.input_value("#body") == "A long draft that must not vanish."
    # Saving is not leaving: no question.
    dialogs.clear()
    pg.get_by_role("button", name="Save changes").click()
    pg.wait_for_load_state()
    assert dialogs == [] and "A long draft" in pg.content()

    # Delete asks; "Cancel" keeps the article, "OK" deletes it.
    pg.get_by_role("button", name="Delete").first.click()
    pg.wait_for_timeout(300)
    assert dialogs and dialogs[-1] == ("confirm", "Delete this article and its comments? "
                                                  "This cannot be undone.")
    with live.app.app_context():
        assert db.session.get(Article, article_id) is not None
    answer["accept"] = True
    with pg.expect_navigation():
        pg.get_by_role("button", name="Delete").first.click()
    with live.app.app_context():
        assert db.session.get(Article, article_id) is None
    assert errors == []
