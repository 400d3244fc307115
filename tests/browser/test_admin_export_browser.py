"""The exports in Chromium: their links download, pages the user views never run them.

``GET /admin/audit.csv`` writes an ``audit.exported`` event, so an image pointing at it (in a
bio, or in an article rendered before images were limited to uploads) must not export as
the admin who happens to look at the page. ``GET /account/export`` (``account.exported``)
likewise, for any signed-in user.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.browser import sign_in

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
    sign_in(pg, live.url, "boss")  # admins are enrolled in 2FA (UserFactory)
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


ACCOUNT_EXPORT = "/account/export"


def _seed_reader(app: Any) -> int:
    """A reader, and an old article (stored before images were limited to uploads) whose
    image points at the account export."""
    from tests.factories import ArticleFactory, UserFactory

    with app.app_context():
        UserFactory(username="ada", display_name="Ada")
        old = ArticleFactory(title="Old news",
                             body_html=f'<p><img src="{ACCOUNT_EXPORT}" alt=""></p>')
        return int(old.id)


def _download_from_account_page(pg: Any) -> dict[str, Any]:
    with pg.expect_download() as download:
        pg.locator("#your-data").get_by_role("link", name="Download your data").click()
    assert download.value.suggested_filename.startswith("bastion-ada-")
    with open(download.value.path(), encoding="utf-8") as json_file:
        return dict(json.load(json_file))


@pytest.mark.asvs("V3.5.3", "V7.5.1")
def test_an_image_never_exports_the_account_and_its_link_does(live_server, page) -> None:  # type: ignore[no-untyped-def]
    from bastion.extensions import db
    from bastion.models import User
    from tests.factories import PASSWORD
    from tests.support.roles import age_reauthentication

    live = live_server()
    article_id = _seed_reader(live.app)
    pg, _ = page
    sign_in(pg, live.url, "ada")
    with pg.expect_response(lambda r: ACCOUNT_EXPORT in r.url) as image:
        pg.goto(f"{live.url}/articles/{article_id}")
    assert image.value.status == 403
    assert _events(live.app, "account.exported") == []
    assert [e.details["dest"] for e in _events(live.app, "account.export_refused")] == ["image"]

    pg.goto(f"{live.url}/account")
    doc = _download_from_account_page(pg)
    assert doc["account"]["username"] == "ada" and doc["account"]["display_name"] == "Ada"
    assert len(_events(live.app, "account.exported")) == 1

    # Stale: the link asks for the password, then shows the section again rather than
    # leaving the user on the password form while the file downloads.
    with live.app.app_context():
        age_reauthentication(db.session.scalar(db.select(User)), minutes=11)
    pg.goto(f"{live.url}/account")
    pg.locator("#your-data").get_by_role("link", name="Download your data").click()
    pg.wait_for_load_state()
    assert "/auth/reauth" in pg.url
    pg.fill("#password", PASSWORD)
    pg.click("form[action='/auth/reauth'] button[type=submit]")  # not the header's Sign out
    pg.wait_for_load_state()
    assert pg.url == f"{live.url}/account?export=ready#your-data"
    assert pg.locator("#your-data [role=status]").inner_text() == (
        "Confirmed. Choose Download your data to get the file.")
    assert len(_events(live.app, "account.exported")) == 1  # nothing ran behind the user's back
    assert _download_from_account_page(pg)["account"]["username"] == "ada"
    assert len(_events(live.app, "account.exported")) == 2
