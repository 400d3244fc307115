"""Serving stored images: the stored type, hardening headers, caching, visibility."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from bastion.models import Article, User
from tests.factories import ArticleFactory
from tests.uploads import corpus
from tests.uploads.conftest import only_upload, post_file, sign_in


def _upload_to(client: FlaskClient, article: Article) -> str:
    resp = post_file(client, f"/articles/{article.id}/images", corpus.png(), filename="chart.png")
    assert resp.status_code == 302, resp.get_data(as_text=True)
    return only_upload().id


def _directives(cache_control: str) -> set[str]:
    return {part.strip() for part in cache_control.split(",")}


@pytest.mark.asvs("V3.2.1", "V3.4.4", "V5.4.1", "V5.3.1")
def test_public_image_is_served_with_hardening_and_cache_headers(
    app: Flask, client: FlaskClient, own_article: Article
) -> None:
    upload_id = _upload_to(client, own_article)
    anonymous = app.test_client()
    resp = anonymous.get(f"/uploads/{upload_id}")
    assert resp.status_code == 200
    assert resp.mimetype == "image/png"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    csp = resp.headers["Content-Security-Policy"]
    assert csp.startswith("sandbox")
    assert "default-src 'none'" in csp
    assert "script-src" not in csp
    assert resp.headers["Content-Disposition"] == "inline; filename=chart.png"
    # Cacheable, but revalidated on every use: no lifetime a shared cache could serve
    # the image from after its article is unpublished or deleted.
    assert _directives(resp.headers["Cache-Control"]) == {"public", "no-cache"}
    assert "Expires" not in resp.headers
    etag = resp.headers["ETag"]
    again = anonymous.get(f"/uploads/{upload_id}", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert _directives(again.headers["Cache-Control"]) == {"public", "no-cache"}


@pytest.mark.asvs("V8.2.2", "V3.2.1")
def test_image_of_a_draft_is_visible_only_to_its_author_and_admins(
    app: Flask, client: FlaskClient, editor: User
) -> None:
    draft = ArticleFactory(author=editor, status="draft", published_at=None)
    upload_id = _upload_to(client, draft)
    own = client.get(f"/uploads/{upload_id}")
    assert own.status_code == 200
    assert "no-store" in own.headers["Cache-Control"]
    assert "public" not in own.headers["Cache-Control"]
    assert app.test_client().get(f"/uploads/{upload_id}").status_code == 404
    other = app.test_client()
    sign_in(other, "editor")
    assert other.get(f"/uploads/{upload_id}").status_code == 404
    admin = app.test_client()
    sign_in(admin, "admin")
    assert admin.get(f"/uploads/{upload_id}").status_code == 200


@pytest.mark.asvs("V8.2.2")
def test_unpublishing_hides_the_images_again(
    app: Flask, client: FlaskClient, own_article: Article
) -> None:
    from bastion.extensions import db

    upload_id = _upload_to(client, own_article)
    anonymous = app.test_client()
    first = anonymous.get(f"/uploads/{upload_id}")
    assert first.status_code == 200
    assert first.cache_control.no_cache  # so a cache asks again, as below, before reuse
    own_article.status = "draft"
    db.session.commit()
    assert anonymous.get(f"/uploads/{upload_id}").status_code == 404
    revalidation = {"If-None-Match": first.headers["ETag"]}
    assert anonymous.get(f"/uploads/{upload_id}", headers=revalidation).status_code == 404


@pytest.mark.parametrize(
    "path",
    ["/uploads/nope", "/uploads/" + "0" * 32, "/uploads/..%2f..%2fetc%2fpasswd", "/uploads/%00"],
)
def test_unknown_or_malformed_ids_are_404(client: FlaskClient, path: str) -> None:
    assert client.get(path).status_code == 404


@pytest.mark.asvs("V8.2.2")
def test_only_the_articles_editors_may_add_images(
    app: Flask, client: FlaskClient, editor: User
) -> None:
    someone_elses = ArticleFactory()
    their_draft = ArticleFactory(status="draft", published_at=None)
    resp = post_file(client, f"/articles/{someone_elses.id}/images", corpus.png())
    assert resp.status_code == 403
    resp = post_file(client, f"/articles/{their_draft.id}/images", corpus.png())
    assert resp.status_code == 404
    viewer = app.test_client()
    sign_in(viewer, "viewer")
    resp = post_file(viewer, f"/articles/{someone_elses.id}/images", corpus.png())
    assert resp.status_code == 403
    admin = app.test_client()
    sign_in(admin, "admin")
    assert post_file(admin, f"/articles/{their_draft.id}/images", corpus.png()).status_code == 302


def test_anonymous_upload_goes_to_sign_in(app: Flask) -> None:
    anonymous = app.test_client()
    from tests.support.auth import csrf_token

    token = csrf_token(anonymous, "/auth/login")
    resp = anonymous.post("/account/avatar", data={"csrf_token": token})
    assert resp.status_code == 302
    assert resp.headers["Location"].startswith("/auth/login")


@pytest.mark.asvs("V3.4.6", "V3.4.4")
def test_served_images_and_their_errors_cannot_be_framed(
    app: Flask, client: FlaskClient, own_article: Article
) -> None:
    upload_id = _upload_to(client, own_article)
    anonymous = app.test_client()
    for path, status in ((f"/uploads/{upload_id}", 200), ("/uploads/" + "0" * 32, 404)):
        resp = anonymous.get(path)
        assert resp.status_code == status
        directives = {d.strip() for d in resp.headers["Content-Security-Policy"].split(";")}
        assert "frame-ancestors 'none'" in directives, path
        assert {"sandbox", "default-src 'none'"} <= directives
        assert resp.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.asvs("V3.4.3")
def test_a_missing_image_is_a_plain_404_that_needs_nothing_the_sandbox_blocks(
    app: Flask, client: FlaskClient, own_article: Article
) -> None:
    """The HTML error page, shown under the image's sandbox policy, lost its stylesheet and
    sign-out form and sent three CSP reports a visit; a plain answer needs none of it."""
    upload_id = _upload_to(client, own_article)
    anonymous = app.test_client()
    for path in ("/uploads/" + "0" * 32, f"/uploads/{upload_id}?size=9999"):
        resp = anonymous.get(path)
        assert resp.status_code == 404 and resp.mimetype == "text/plain", path
        assert "<" not in resp.get_data(as_text=True)
        assert "sandbox" in resp.headers["Content-Security-Policy"]
