"""In Chromium: API docs and token page render under the CSP; a token is shown once."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.browser


@pytest.mark.asvs("V3.4.3", "V7.5.1")
def test_api_docs_and_token_page_work_without_csp_violations(live_server: Any, page: Any) -> None:
    from tests.factories import PASSWORD, UserFactory

    live = live_server()
    with live.app.app_context():
        username = UserFactory(role_name="editor").username
    pg, watch = page
    assert pg.goto(live.url + "/api/docs").status == 200
    assert pg.locator("h1").first.inner_text().startswith("Bastion API")
    assert pg.locator("#op-create_article").is_visible()

    pg.goto(live.url + "/auth/login")
    pg.fill("#username", username)
    pg.fill("#password", PASSWORD)
    pg.click("button[type=submit]")
    pg.wait_for_load_state()
    pg.goto(live.url + "/account/tokens")
    assert pg.get_by_text("No tokens yet").is_visible()
    pg.get_by_label("Name").fill("deploy script")
    pg.get_by_label("articles:read", exact=False).check()
    pg.get_by_role("button", name="Create token").click()
    pg.wait_for_load_state()
    secret = pg.locator("#new-token").input_value()
    assert secret.startswith("bst_")
    pg.get_by_role("link", name="Done").click()
    pg.wait_for_load_state()
    assert "deploy script" in pg.content()
    assert secret not in pg.content()
    pg.get_by_role("button", name="Revoke deploy script").click()  # asked, and refused
    assert watch.dialogs == ["Revoke the token “deploy script”? Whatever uses it stops working at once."]
    assert "revoked" not in pg.locator("table").inner_text()
    watch.confirms.add(watch.dialogs[0])
    pg.get_by_role("button", name="Revoke deploy script").click()
    pg.wait_for_load_state()
    assert pg.get_by_text("revoked", exact=True).is_visible()
    assert watch.csp_violations == []
    assert watch.console_errors == []
