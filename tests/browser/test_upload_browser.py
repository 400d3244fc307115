"""In a real Chromium: an uploaded image cannot run script, even when crafted to."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.browser import inject_markup
from tests.uploads import corpus

pytestmark = pytest.mark.browser


def _store(live: Any) -> dict[str, str]:
    """A polyglot uploaded the normal way, plus two files tampered with after storage."""
    from bastion.extensions import db
    from bastion.models import Upload
    from bastion.uploads import storage
    from tests.factories import PASSWORD, ArticleFactory, UserFactory
    from tests.support.auth import AuthActions
    from tests.uploads.conftest import post_file

    with live.app.app_context():
        editor = UserFactory(role_name="editor")
        article = ArticleFactory(author=editor)
        client = live.app.test_client()
        AuthActions(client).login(editor.username, PASSWORD)
        ids = {}
        for key, data in (
            ("polyglot", corpus.gif_js_polyglot()),
            ("html", corpus.png()),
            ("script", corpus.png()),
        ):
            resp = post_file(client, f"/articles/{article.id}/images", data, filename=f"{key}.gif")
            assert resp.status_code == 302
            ids[key] = db.session.scalars(select_latest()).first().id
        # Simulate a decoder that let something through: the worst stored bytes and type.
        html = db.session.get(Upload, ids["html"])
        html.content_type = "text/html"
        storage.path_for(html.storage_name).write_bytes(
            b"<!doctype html><script>window.__pwned=1;alert('html')</script>"
            b"<img src=x onerror=\"alert('img')\">"
        )
        script = db.session.get(Upload, ids["script"])
        storage.path_for(script.storage_name).write_bytes(b"window.__pwned=3;alert('script')")
        db.session.commit()
    return ids


def select_latest():  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from bastion.models import Upload

    return select(Upload).order_by(Upload.created_at.desc())


@pytest.mark.asvs("V3.2.1", "V5.3.1", "V3.4.4")
def test_uploaded_files_cannot_run_script_in_chromium(live_server, page) -> None:  # type: ignore[no-untyped-def]
    live = live_server()
    ids = _store(live)
    pg, watch = page
    watch.violations_expected = True  # the hostile files' own markup, blocked
    for key in ("polyglot", "html"):
        resp = pg.goto(f"{live.url}/uploads/{ids[key]}")
        assert resp.status == 200
        pg.wait_for_timeout(200)
        assert pg.evaluate("window.__pwned === undefined"), key
        # Sandboxed: even a document that got through would have no origin of its own,
        # so no access to the site's cookies, storage or same-origin requests.
        assert pg.evaluate("window.origin") == "null", key
    # The classic polyglot attack: markup injected into a page of the site loads the
    # "image" as a script (allowed by script-src 'self'); the image type and nosniff stop
    # it from running.
    src = f"/uploads/{ids['script']}"
    inject_markup(pg, live.url + "/", {"</body>": f'<script src="{src}"></script>'})
    with pg.expect_response(live.url + src) as fetched:
        pg.goto(live.url + "/")
    assert fetched.value.status == 200  # fetched, then refused as a script
    pg.wait_for_timeout(200)
    assert pg.evaluate("window.__pwned === undefined")
    assert watch.dialogs == []
