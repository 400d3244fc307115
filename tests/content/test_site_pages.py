"""Pages that bring several features together render, finished, for every role."""

from __future__ import annotations

import io

import pytest
from flask import Flask
from flask.testing import FlaskClient

from bastion.extensions import db
from bastion.models import Upload, User
from tests.factories import ArticleFactory, UserFactory
from tests.support.auth import csrf_token
from tests.support.roles import client_for
from tests.uploads import corpus


def _upload(client: FlaskClient, path: str, page: str) -> None:
    """Post a real PNG through the form the page itself offers (``next`` brings us back)."""
    form = {
        "csrf_token": csrf_token(client, page),
        "next": page,
        "image": (io.BytesIO(corpus.png()), "diagram.png", "image/png"),
    }
    resp = client.post(path, data=form, content_type="multipart/form-data")
    assert resp.status_code == 302 and resp.headers["Location"] == page


@pytest.mark.parametrize("role", ["viewer", "editor", "admin"])
def test_account_page_offers_photo_and_tokens_and_the_profile_shows_the_photo(
    app: Flask, role: str
) -> None:
    user = UserFactory(role_name=role)
    client = client_for(app, user)
    page = client.get("/account").get_data(as_text=True)
    for heading in ("Profile", "Email address", "Password", "Two-factor authentication",
                    "Where you are signed in", "Personal access tokens"):
        assert f">{heading}</h2>" in page, heading
    assert "No profile photo yet" in page and 'for="avatar-image"' in page
    _upload(client, "/account/avatar", "/account")
    avatar = db.session.get(User, user.id).avatar_id
    assert avatar is not None
    assert f'src="/uploads/{avatar}"' in client.get("/account").get_data(as_text=True)
    profile = client_for(app).get(f"/u/{user.username}")
    assert profile.status_code == 200
    assert f'<img class="avatar" src="/uploads/{avatar}"' in profile.get_data(as_text=True)
    assert client_for(app).get(f"/uploads/{avatar}").status_code == 200


@pytest.mark.parametrize("role", ["owner", "admin"])
def test_article_edit_page_manages_the_articles_images(app: Flask, role: str) -> None:
    article = ArticleFactory()
    user = article.author if role == "owner" else UserFactory(role_name="admin")
    client = client_for(app, user)
    edit = f"/articles/{article.id}/edit"
    page = client.get(edit).get_data(as_text=True)
    assert 'id="article-images-title">Images</h2>' in page
    assert "No images yet" in page and 'for="article-image"' in page
    _upload(client, f"/articles/{article.id}/images", edit)
    image = db.session.scalar(db.select(Upload).where(Upload.article_id == article.id))
    assert image is not None
    page = client.get(edit).get_data(as_text=True)
    assert f"![diagram](/uploads/{image.id})" in page
    assert f'action="/uploads/{image.id}/delete"' in page
    # The delete form on the edit page works and comes back to it.
    token = csrf_token(client, edit)
    resp = client.post(f"/uploads/{image.id}/delete", data={"csrf_token": token, "next": edit})
    assert resp.status_code == 302 and resp.headers["Location"] == edit
    assert db.session.get(Upload, image.id) is None
    assert "No images yet" in client.get(edit).get_data(as_text=True)
