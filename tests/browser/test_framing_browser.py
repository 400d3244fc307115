"""What Chromium does with the site's framing headers, not only what they say.

A page on another origin frames a signed-in user's account page (clickjacking): the
account must never render inside it (CSP ``frame-ancestors 'none'``, with
``X-Frame-Options: DENY`` for browsers without CSP 2).
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

pytestmark = pytest.mark.browser

SECRET_NAME = "Display Name Only The Owner Sees"


def _framing_page(target: str) -> Flask:
    evil = Flask("attacker")

    @evil.get("/")
    def index() -> str:
        return (f'<!doctype html><title>Win a prize</title>'
                f'<iframe id="victim" src="{target}" width="800" height="600"></iframe>')

    return evil


def _signed_in(live: Any, pg: Any) -> None:
    from tests.factories import UserFactory
    from tests.support.browser import sign_in

    with live.app.app_context():
        username = UserFactory(display_name=SECRET_NAME).username  # type: ignore[no-untyped-call]
    sign_in(pg, live.url, username)


@pytest.mark.asvs("V3.4.6")
def test_another_origin_cannot_frame_a_signed_in_page(live_server, page) -> None:  # type: ignore[no-untyped-def]
    from tests.support.browser import serve

    live = live_server()
    pg, watch = page
    watch.violations_expected = True  # the refused framing
    _signed_in(live, pg)
    evil = serve(_framing_page(f"{live.url}/account"))
    try:
        pg.goto(evil.url + "/")
        pg.wait_for_timeout(500)
        frame = pg.frame_locator("#victim")
        # The account page (a form to change the name, the sign-out button) never renders.
        assert frame.locator("text=Sign out").count() == 0
        framed = [f for f in pg.frames if f.url.startswith(live.url)]
        for f in framed:
            assert SECRET_NAME not in f.content()
        assert any("frame-ancestors 'none'" in v for v in watch.csp_violations)
    finally:
        evil.stop()

