"""A user who goes takes their own images along, never those in other people's articles.

An admin may put an image into any author's article. Deleting the admin's account used to
delete that image too (its row went with its owner, its file after commit), and the other
author's published article showed a broken image.
"""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import delete, select

from bastion.extensions import db
from bastion.models import Article, AuditEvent, Upload, User
from bastion.uploads import cleanup, services, storage
from tests.factories import ArticleFactory, UserFactory
from tests.support.auth import csrf_token
from tests.uploads import corpus
from tests.uploads.conftest import (
    AVATAR,
    assert_store_consistent,
    post_file,
    sign_in,
    upload_count,
)


def _files(upload: Upload) -> list[Path]:
    return [storage.path_for(n) for n in services.file_names(upload)]


def _uploads_of(owner_id: int) -> list[Upload]:
    db.session.expire_all()
    return list(db.session.scalars(select(Upload).where(Upload.owner_id == owner_id)))


def _delete_user(user_id: int, how: str) -> None:
    """Delete the account through the session (``session.delete``) or a DELETE statement."""
    if how == "session":
        db.session.delete(db.session.get(User, user_id))
    else:
        db.session.execute(delete(User).where(User.id == user_id))
    db.session.commit()


def _handed_over() -> list[AuditEvent]:
    db.session.expire_all()
    stmt = select(AuditEvent).where(AuditEvent.event == "upload.handed_over")
    return list(db.session.scalars(stmt))


@pytest.fixture
def admin(client: FlaskClient) -> User:
    """A signed-in admin on ``client``: may put images into anyone's article."""
    return sign_in(client, "admin")


@pytest.mark.asvs("V2.3.3")
@pytest.mark.parametrize("how", ["session", "statement"])
def test_an_image_put_into_another_authors_article_outlives_its_uploader(
    app: Flask, client: FlaskClient, admin: User, how: str
) -> None:
    author = UserFactory(role_name="editor")
    theirs = ArticleFactory(author=author, status="published")
    own = ArticleFactory(author=admin, status="published")
    assert post_file(client, AVATAR, corpus.png()).status_code == 302
    assert post_file(client, f"/articles/{own.id}/images", corpus.png()).status_code == 302
    assert post_file(client, f"/articles/{theirs.id}/images", corpus.png((30, 20))).status_code == 302
    uploads = _uploads_of(admin.id)
    kept = next(u for u in uploads if u.article_id == theirs.id)
    kept_id, kept_files = kept.id, _files(kept)
    gone_files = [f for u in uploads if u.id != kept_id for f in _files(u)]
    assert len(gone_files) == 3  # the photo's two sizes and the image in their own article
    reader = app.test_client()
    served = reader.get(f"/uploads/{kept_id}")
    assert served.status_code == 200

    _delete_user(admin.id, how)

    again = reader.get(f"/uploads/{kept_id}")
    assert again.status_code == 200
    assert again.data == served.data
    assert [u.id for u in _uploads_of(author.id)] == [kept_id]  # now the article author's
    assert upload_count() == 1  # the uploader's own images are gone...
    assert not any(f.exists() for f in gone_files)  # ...files included
    assert all(f.is_file() for f in kept_files)
    [event] = _handed_over()
    assert event.target_user_id == author.id
    assert event.details == {"from_user_id": admin.id, "count": 1, "upload_ids": [kept_id]}
    assert_store_consistent()


@pytest.mark.parametrize("how", ["session", "statement"])
def test_images_in_the_articles_of_authors_deleted_with_the_uploader_go(
    client: FlaskClient, admin: User, how: str
) -> None:
    """Deleted in one go, the author keeps nothing: nobody is left to hand images to."""
    author = UserFactory(role_name="editor")
    theirs = ArticleFactory(author=author, status="published")
    assert post_file(client, f"/articles/{theirs.id}/images", corpus.png()).status_code == 302
    files = [f for u in _uploads_of(admin.id) for f in _files(u)]
    user_ids = [admin.id, author.id]
    if how == "session":
        for user_id in user_ids:
            db.session.delete(db.session.get(User, user_id))
    else:
        db.session.execute(delete(User).where(User.id.in_(user_ids)))
    db.session.commit()
    assert upload_count() == 0
    assert not any(f.exists() for f in files)
    assert _handed_over() == []


def test_a_rolled_back_deletion_hands_nothing_over(
    app: Flask, client: FlaskClient, admin: User
) -> None:
    theirs = ArticleFactory(author=UserFactory(role_name="editor"), status="published")
    assert post_file(client, f"/articles/{theirs.id}/images", corpus.png()).status_code == 302
    [upload] = _uploads_of(admin.id)
    files = _files(upload)
    db.session.delete(db.session.get(User, admin.id))
    db.session.flush()
    db.session.rollback()
    assert [u.id for u in _uploads_of(admin.id)] == [upload.id]
    assert all(f.is_file() for f in files)
    assert _handed_over() == []


@pytest.mark.asvs("V2.3.3")
def test_an_upload_racing_its_uploaders_deletion_is_never_lost(
    app: Flask, client: FlaskClient, admin: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deletion has looked for images to hand over when the uploader's image for
    another author's article arrives. It was saved, answered as saved, and deleted with
    its uploader a moment later; it now waits for the deletion (which holds the uploader's
    lock) and is refused, leaving neither a row nor a file, and answered as a request of
    an account that no longer exists (401), not with an error page."""
    theirs = ArticleFactory(author=UserFactory(role_name="editor"), status="published")
    path = f"/articles/{theirs.id}/images"
    token = csrf_token(client, path)
    admin_id = admin.id
    looked, go = threading.Event(), threading.Event()
    hand_over = cleanup._hand_over

    def paused_hand_over(*args: object) -> None:
        hand_over(*args)  # type: ignore[arg-type]
        looked.set()
        go.wait(10)

    monkeypatch.setattr(cleanup, "_hand_over", paused_hand_over)
    errors: list[BaseException] = []

    def delete_uploader() -> None:
        with app.app_context():
            try:
                _delete_user(admin_id, "session")
            except BaseException as exc:  # reported by the assertion below
                errors.append(exc)

    statuses: list[int] = []

    def upload() -> None:
        form = {"csrf_token": token, "image": (io.BytesIO(corpus.png()), "late.png")}
        statuses.append(client.post(path, data=form).status_code)

    deleting = threading.Thread(target=delete_uploader)
    deleting.start()
    assert looked.wait(10)
    uploading = threading.Thread(target=upload)
    uploading.start()
    time.sleep(0.5)  # the upload reaches the uploader's lock while the deletion holds it
    go.set()
    deleting.join(30)
    uploading.join(30)
    assert errors == []
    assert len(statuses) == 1
    assert db.session.get(Article, theirs.id) is not None
    if statuses == [302]:  # answered as saved: then it must be there, the author's
        assert [u.article_id for u in _uploads_of(theirs.author_id)] == [theirs.id]
    else:  # refused: the account is gone, and so is its sign-in (this was a 500 page)
        assert statuses == [401]
        assert upload_count() == 0
    assert_store_consistent()
