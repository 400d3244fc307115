"""Chromium: nothing sensitive in browser storage, and scripts insert text, not markup (V14.3.3, V3.2.2)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.factories import PASSWORD

pytestmark = pytest.mark.browser

STORAGE = """async () => ({
  local: Object.keys(localStorage),
  session: Object.keys(sessionStorage),
  idb: indexedDB.databases ? (await indexedDB.databases()).map(d => d.name) : [],
  caches: self.caches ? await caches.keys() : [],
  cookie: document.cookie,
})"""


@pytest.mark.asvs("V14.3.3", "V3.3.4", "V14.3.1")
def test_browser_storage_holds_no_secret_after_signing_in(live_server: Any, page: Any) -> None:
    live = live_server()
    with live.app.app_context():
        from tests.factories import ArticleFactory, UserFactory

        editor = UserFactory(username="stella", email="stella@example.org", role_name="editor")
        article = ArticleFactory(author=editor)
        article_id = article.id
    pg, watch = page
    pg.goto(live.url + "/auth/login")
    pg.fill("#username", "stella")
    pg.fill("#password", PASSWORD)
    pg.get_by_role("button", name="Sign in").click()
    pg.wait_for_load_state()
    for path in ("/", "/account", "/articles", f"/articles/{article_id}", "/articles/new",
                 "/u/stella", "/account/2fa"):
        pg.goto(live.url + path)
        state = pg.evaluate(STORAGE)
        assert state == {"local": [], "session": [], "idb": [], "caches": [], "cookie": ""}, path
    session_cookies = [c for c in pg.context.cookies() if c["name"] == "__Host-session"]
    assert session_cookies and session_cookies[0]["httpOnly"] and session_cookies[0]["secure"]

    # Signed out, the browser holds nothing of stella: no storage, and what the session
    # cookie still carries (the "signed out" message, a form token) names nobody.
    pg.get_by_role("button", name="Sign out", exact=True).click()
    pg.wait_for_load_state()
    state = pg.evaluate(STORAGE)
    assert state == {"local": [], "session": [], "idb": [], "caches": [], "cookie": ""}
    serializer = live.app.session_interface.get_signing_serializer(live.app)
    for cookie in pg.context.cookies():
        assert cookie["name"] == "__Host-session", cookie["name"]
        left = serializer.loads(cookie["value"])
        assert set(left) <= {"_flashes", "csrf_token"}, left
        assert "stella" not in str(left)
    assert watch.csp_violations == []


@pytest.mark.asvs("V3.2.2")
def test_live_password_hint_inserts_text_only(live_server: Any, page: Any) -> None:
    live = live_server()
    pg, watch = page
    pg.goto(live.url + "/auth/register")
    pg.fill("#password", '<img src=x onerror="alert(1)"><b>bold</b>')
    hint = pg.locator("#password-live")
    assert "characters" in hint.inner_text()
    assert hint.evaluate("el => el.children.length") == 0
    assert watch.dialogs == [] and watch.csp_violations == []
