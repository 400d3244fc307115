"""After an upload form, ``next`` never leads straight into a download.

The attack: an upload form sent with ``next=/account/export`` (or the audit CSV). The
form's answer is a same-origin navigation, so the export's Fetch Metadata check
(``refuse_unless_requested``) would take the redirect for the user's own click and the
file would be saved, and audited, unasked. The user lands on the page that offers the
download instead (``fetch_metadata.landing_page``), as after a password form.
"""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from bastion.extensions import db
from bastion.models import Article, AuditEvent
from tests.support.auth import csrf_token
from tests.uploads import corpus
from tests.uploads.conftest import AVATAR, only_upload, post_file

READY = "/account?export=ready#your-data"
# A browser following the form's redirect: a same-origin navigation.
SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "navigate",
               "Sec-Fetch-Dest": "document"}
DOWNLOADS = [
    ("/account/export", READY),
    ("/account//export", READY),  # the router merges the slashes
    ("/account%2Fexport", READY),  # percent-encoded
    ("/%61ccount/export?x=1", READY),
    ("/admin/audit.csv?event=login.success", "/admin/audit?event=login.success"),
    ("/admin//audit.csv", "/admin/audit"),
]


def _exported() -> int:
    return int(db.session.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.event.in_(("account.exported", "audit.exported")))) or 0)


def _lands_on_the_offering_page(client: FlaskClient, resp: object, expected: str) -> None:
    assert resp.status_code == 302, resp  # type: ignore[attr-defined]
    location = resp.headers["Location"]  # type: ignore[attr-defined]
    assert location == expected
    landed = client.get(location, headers=SAME_ORIGIN)
    assert "Content-Disposition" not in landed.headers
    assert _exported() == 0


@pytest.mark.asvs("V3.5.3")
@pytest.mark.parametrize(("target", "expected"), DOWNLOADS)
def test_an_avatar_upload_does_not_lead_into_a_download(
    client: FlaskClient, editor: object, target: str, expected: str
) -> None:
    resp = post_file(client, AVATAR, corpus.png(), next=target)
    _lands_on_the_offering_page(client, resp, expected)


@pytest.mark.parametrize(("target", "expected"), DOWNLOADS[:2])
def test_an_article_image_or_a_deletion_does_not_either(
    client: FlaskClient, own_article: Article, target: str, expected: str
) -> None:
    images = f"/articles/{own_article.id}/images"
    resp = post_file(client, images, corpus.png(), next=target)
    _lands_on_the_offering_page(client, resp, expected)

    upload = only_upload()
    resp = client.post(f"/uploads/{upload.id}/delete",
                       data={"csrf_token": csrf_token(client, images), "next": target})
    _lands_on_the_offering_page(client, resp, expected)


def test_any_other_page_is_still_where_the_form_returns(
    client: FlaskClient, own_article: Article
) -> None:
    edit = f"/articles/{own_article.id}/edit"
    assert post_file(client, AVATAR, corpus.png(), next="/account").headers["Location"] == "/account"
    resp = post_file(client, f"/articles/{own_article.id}/images", corpus.png(), next=edit)
    assert resp.headers["Location"] == edit
