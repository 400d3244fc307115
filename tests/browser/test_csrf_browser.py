"""CSRF in a real browser: a page on another origin posts a form with the user's cookies."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

pytestmark = pytest.mark.browser

ATTACK_PAGE = """<!doctype html><title>Free prizes</title>
<form id="no-token" method="post" action="{site}/articles/new">
  <input name="title" value="Planted by another site"><input name="body" value="x">
  <input name="publish" value="y"><button id="send-no-token">Claim</button>
</form>
<form id="forged" method="post" action="{site}/articles/new">
  <input name="title" value="Planted by another site"><input name="body" value="x">
  <input name="csrf_token" value="IjAwMDAi.ZZZZZZ.forged-signature-forged-signature">
  <button id="send-forged">Claim again</button>
</form>"""


def _attacker(site: str) -> Flask:
    evil = Flask("attacker")

    @evil.get("/")
    def index() -> str:
        return ATTACK_PAGE.format(site=site)

    return evil


@pytest.mark.asvs("V3.5.1", "V3.5.3")
def test_form_posted_from_another_origin_is_refused(live_server, page) -> None:  # type: ignore[no-untyped-def]
    from bastion.extensions import db
    from bastion.models import Article, AuditEvent
    from tests.factories import UserFactory
    from tests.support.browser import serve, sign_in

    live = live_server()
    with live.app.app_context():
        editor = UserFactory(role_name="editor")
        username = editor.username
    # Another port of the same host: same site, so the browser does send the (SameSite=Lax)
    # session cookie; only the CSRF token stands in the way.
    evil = serve(_attacker(live.url))
    try:
        pg, _ = page
        sign_in(pg, live.url, username)
        statuses: list[Any] = []
        for button in ("#send-no-token", "#send-forged"):
            pg.goto(evil.url + "/")
            with pg.expect_navigation() as nav:
                pg.click(button)
            statuses.append(nav.value.status)
            assert "sent from another site" in pg.content()
    finally:
        evil.stop()
    assert statuses == [400, 400]
    with live.app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(Article)) == 0
        failures = db.session.scalars(
            db.select(AuditEvent).where(AuditEvent.event == "csrf.failure")
        ).all()
        # One row per client a minute (an anonymous flood cannot fill the trail); the
        # second refusal is logged and counted, not stored.
        assert len(failures) == 1
