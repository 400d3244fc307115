"""Helpers for upload tests: sign in, post a file through the real form, inspect the store."""

from __future__ import annotations

import io
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from bastion.extensions import db
from bastion.models import Article, AuditEvent, Upload, User
from tests.factories import PASSWORD, ArticleFactory, UserFactory
from tests.support.auth import AuthActions, csrf_token

AVATAR = "/account/avatar"


def post_file(
    client: FlaskClient,
    path: str,
    data: bytes,
    filename: str = "photo.png",
    content_type: str = "image/png",
    token_page: str = AVATAR,
    **extra: Any,
) -> TestResponse:
    token = csrf_token(client, token_page)
    form = {"csrf_token": token, "image": (io.BytesIO(data), filename, content_type), **extra}
    return client.post(path, data=form, content_type="multipart/form-data")


def sign_in(client: FlaskClient, role: str = "editor") -> User:
    user = UserFactory(role_name=role)
    resp = AuthActions(client).login_fully(user, PASSWORD)
    assert resp.status_code == 302, resp.get_data(as_text=True)
    return user


def rejections() -> list[AuditEvent]:
    db.session.expire_all()
    return list(db.session.scalars(select(AuditEvent).where(AuditEvent.event == "upload.rejected")))


def upload_count() -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count(Upload.id))) or 0


def only_upload() -> Upload:
    db.session.expire_all()
    rows = list(db.session.scalars(select(Upload)))
    assert len(rows) == 1
    return rows[0]


def assert_store_consistent() -> None:
    from bastion.uploads.cleanup import check_store

    db.session.expire_all()
    report = check_store()
    assert report.consistent, report


@pytest.fixture(autouse=True)
def _empty_store(request: pytest.FixtureRequest) -> None:
    """Tables are emptied per test by the app fixture; empty the upload directory too."""
    if "app" in request.fixturenames:
        import shutil

        shutil.rmtree(request.getfixturevalue("app").config["UPLOAD_DIR"], ignore_errors=True)


@pytest.fixture
def editor(client: FlaskClient) -> User:
    """A signed-in editor on ``client``."""
    return sign_in(client, "editor")


@pytest.fixture
def own_article(editor: User) -> Article:
    return ArticleFactory(author=editor)
