"""The audit export in Chromium: its link downloads, pages the admin views never run it.

``GET /admin/audit.csv`` writes an ``audit.exported`` event, so an image pointing at it (in a
bio, or in an article rendered before images were limited to uploads) must not export as
the admin who happens to look at the page.
"""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.browser

EXPORT = "/admin/audit.csv?since=0001-01-01"


def _seed(app: Any) -> int:
    """An admin, a reader whose bio points at the export, and an article stored long ago."""
    from bastion.profiles.services import update_profile
    from tests.factories import ArticleFactory, UserFactory

    with app.app_context():
        UserFactory(role_name="admin", username="boss")
        mallory = UserFactory(username="mallory")
        update_profile(mallory, display_name="Mallory", bio=f"Hi!\n\n![]({EXPORT})")
        # HTML as it was stored before rendering kept only upload images: never re-rendered.
        old = ArticleFactory(title="Old news", body_html=f'<p><img src="{EXPORT}" alt=""></p>')
        return int(old.id)


def _sign_in_as_admin(pg: Any, base: str) -> None:
    import pyotp

    from tests.factories import PASSWORD, TOTP_SECRET

    pg.goto(f"{base}/auth/login")
    pg.fill("#username", "boss")
    pg.fill("#password", PASSWORD)
    pg.click("button[type=submit]")
    pg.wait_for_load_state()
    pg.fill("#code", pyotp.TOTP(TOTP_SECRET).now())  # admins are enrolled (UserFactory)
    pg.click("button[type=submit]")
    pg.wait_for_load_state()


def _events(app: Any, name: str) -> list[Any]:
    from bastion.extensions import db
    from bastion.models import AuditEvent

    with app.app_context():
        return list(db.session.scalars(db.select(AuditEvent).where(AuditEvent.event == name)))


@pytest.mark.asvs("V3.5.3", "V1.3.5")
def test_viewing_pages_never_exports_and_the_export_link_still_does(live_server, page) -> None:  # type: ignore[no-untyped-def]
    live = live_server()
    article_id = _seed(live.app)
    pg, _ = page
    _sign_in_as_admin(pg, live.url)
    pg.goto(f"{live.url}/u/mallory")
    pg.wait_for_load_state("networkidle")
    # The bio was rendered now: the image is there, without a source to fetch.
    sources = pg.eval_on_selector_all(".bio img", "els => els.map(e => e.getAttribute('src'))")
    assert sources == [None]
    # The old article still holds the image: Chromium fetches it and the export refuses.
    with pg.expect_response(lambda r: "/admin/audit.csv" in r.url) as image:
        pg.goto(f"{live.url}/articles/{article_id}")
    assert image.value.status == 403
    assert _events(live.app, "audit.exported") == []
    assert [e.details["dest"] for e in _events(live.app, "audit.export_refused")] == ["image"]

    pg.goto(f"{live.url}/admin/audit?event=login.success&user=")
    with pg.expect_download() as download:
        pg.click("text=Export CSV")
    assert download.value.suggested_filename.startswith("bastion-audit-")
    with open(download.value.path(), encoding="utf-8") as csv_file:
        lines = csv_file.read().splitlines()
    assert lines[0].startswith("id,created_at,event,")
    assert len(lines) == 2
    assert ",login.success," in lines[1]
    assert [e.details for e in _events(live.app, "audit.exported")] == [{"event": "login.success"}]
