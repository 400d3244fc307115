"""In a real Chromium: pages render under the CSP with no violations, injected script does not run."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser


@pytest.mark.asvs("V3.4.3", "V3.1.1")
def test_home_renders_without_csp_violations_or_console_errors(live_server, page) -> None:  # type: ignore[no-untyped-def]
    live = live_server()
    pg, watch = page
    resp = pg.goto(live.url + "/")
    assert resp.status == 200
    assert pg.locator("h1").first.inner_text()
    # The stylesheet really applied (a blocked stylesheet would leave the default font).
    bg = pg.evaluate("getComputedStyle(document.body).backgroundColor")
    assert bg not in ("", "rgba(0, 0, 0, 0)")
    pg.goto(live.url + "/auth/login")
    assert watch.csp_violations == []
    assert watch.console_errors == []


@pytest.mark.asvs("V3.4.3", "V1.2.1")
def test_injected_inline_script_is_blocked_by_csp(live_server, page) -> None:  # type: ignore[no-untyped-def]
    live = live_server()
    pg, watch = page
    pg.goto(live.url + "/")
    # Simulate markup that slipped past escaping: inline script, handler, javascript: URL.
    pg.evaluate(
        """() => {
          const d = document.createElement('div');
          d.innerHTML = '<img src=x onerror="window.__pwned=1">';
          document.body.appendChild(d);
          const s = document.createElement('script');
          s.textContent = 'window.__pwned = 2';
          document.body.appendChild(s);
        }"""
    )
    pg.wait_for_timeout(300)
    assert pg.evaluate("window.__pwned === undefined")
    assert watch.csp_violations, "the browser should report the blocked inline script"


@pytest.mark.asvs("V3.3.1")
def test_session_cookie_is_accepted_by_the_browser(live_server, page) -> None:  # type: ignore[no-untyped-def]
    from tests.factories import PASSWORD, UserFactory

    live = live_server()
    with live.app.app_context():
        user = UserFactory()
        username = user.username
    pg, _ = page
    pg.goto(live.url + "/auth/login")
    pg.fill("#username", username)
    pg.fill("#password", PASSWORD)
    pg.click("button[type=submit]")
    pg.wait_for_load_state()
    cookies = {c["name"]: c for c in pg.context.cookies()}
    assert "__Host-session" in cookies
    c = cookies["__Host-session"]
    assert c["httpOnly"] and c["secure"] and c["sameSite"] == "Lax"
    assert pg.locator("text=Sign out").count() == 1
