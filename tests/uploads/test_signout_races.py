"""Images stored or deleted by an account signed out everywhere, or disabled, while the
request was on its way, on SQLite and PostgreSQL.

Storing an image (a profile photo, or into an article) and deleting one were judged again
under the actor's row lock on the role as committed (tests/uploads/test_role_races.py),
but not on the sign-in: a request already past its session check when "sign out
everywhere" committed still stored its image. The sign-in is now read again under that
lock too (``still_signed_in``), and a profile photo's account must still be enabled.
"""

from __future__ import annotations

import io

import pytest
from flask import Flask
from sqlalchemy import select
from werkzeug.exceptions import Forbidden

from bastion.extensions import db
from bastion.models import AuditEvent, Upload, User
from bastion.uploads import services as uploads
from tests.factories import ArticleFactory, UserFactory
from tests.support.meanwhile import before_the_lock, disabled, signed_out_everywhere
from tests.support.roles import client_for, post
from tests.uploads import corpus
from tests.uploads.conftest import AVATAR, assert_store_consistent, post_file, upload_count

ASVS = ("V8.2.1", "V8.2.2", "V8.3.1")


def _denied() -> list[object]:
    db.session.expire_all()
    rows = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "authz.denied"))
    return [row.details for row in rows]


def _image_of(owner: User) -> str:
    """An image ``owner`` stored into their own article; its id."""
    article = ArticleFactory(author=owner)
    return uploads.store_image(owner, io.BytesIO(corpus.png()), kind="article",
                               article=article, original_name="mine.png").id


@pytest.mark.asvs(*ASVS, "V7.4.1", "V7.4.5")
@pytest.mark.parametrize("kind", ["avatar", "article"])
def test_an_upload_signed_out_meanwhile_stores_nothing(
    app: Flask, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """"Sign out everywhere" committed while the image was on its way (read, decoded,
    re-encoded): the sign-in it came with is over, and nothing is stored."""
    editor = UserFactory(role_name="editor")
    client = client_for(app, editor)
    editor_id = editor.id
    path = AVATAR if kind == "avatar" else f"/articles/{ArticleFactory(author=editor).id}/images"
    locked = before_the_lock(app, monkeypatch, uploads, editor_id, signed_out_everywhere)

    resp = post_file(client, path, corpus.png(), token_page=path)

    assert resp.status_code == 403
    assert "signed out meanwhile" in resp.get_data(as_text=True)
    assert locked == [editor_id]
    assert upload_count() == 0
    stored = db.session.get(User, editor_id)
    assert stored is not None and stored.avatar_id is None
    assert_store_consistent()  # refused before any file was written


@pytest.mark.asvs(*ASVS, "V7.4.2")
def test_a_profile_photo_of_an_account_disabled_meanwhile_is_refused(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = UserFactory()
    before_the_lock(app, monkeypatch, uploads, user.id, disabled)

    with pytest.raises(Forbidden, match="no longer do this"):
        uploads.store_image(user, io.BytesIO(corpus.png()), kind="avatar", original_name="a.png")

    assert upload_count() == 0
    assert _denied() == [{"hidden": False, "what": "upload avatar"}]
    assert_store_consistent()


@pytest.mark.asvs(*ASVS, "V7.4.1", "V7.4.5")
@pytest.mark.parametrize("whose", ["own", "someone else's"])
def test_an_image_deleted_by_an_account_signed_out_meanwhile_stays(
    app: Flask, monkeypatch: pytest.MonkeyPatch, whose: str
) -> None:
    """The owner, or an admin moderating another's image: a sign-in ended meanwhile
    deletes nothing."""
    owner = UserFactory(role_name="editor")
    image_id = _image_of(owner)
    if whose == "own":
        actor = owner
    else:
        UserFactory(role_name="admin")  # so that the actor is not the last admin
        actor = UserFactory(role_name="admin")
    client = client_for(app, actor)
    before_the_lock(app, monkeypatch, uploads, actor.id, signed_out_everywhere)

    resp = post(client, f"/uploads/{image_id}/delete")

    assert resp.status_code == 403
    assert "signed out meanwhile" in resp.get_data(as_text=True)
    assert upload_count() == 1
    assert_store_consistent()


@pytest.mark.asvs(*ASVS, "V7.4.2")
def test_an_owner_disabled_meanwhile_deletes_no_image(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = UserFactory(role_name="editor")
    image_id = _image_of(owner)
    image = uploads.get_upload(image_id)
    assert image is not None
    before_the_lock(app, monkeypatch, uploads, owner.id, disabled)

    with pytest.raises(Forbidden, match="no longer do this"):
        uploads.delete_upload(owner, image)

    assert upload_count() == 1
    assert _denied() == [{"hidden": False, "what": f"delete upload {image_id}"}]


@pytest.mark.asvs(*ASVS)
@pytest.mark.parametrize("kind", ["avatar", "article"])
def test_an_unraced_upload_and_its_deletion_are_made(
    app: Flask, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """Nothing of the uploader's changed meanwhile (another account's sign-out is no
    change of theirs): the image is stored, then deleted, each under the uploader's lock."""
    editor = UserFactory(role_name="editor")
    client = client_for(app, editor)
    editor_id = editor.id
    path = AVATAR if kind == "avatar" else f"/articles/{ArticleFactory(author=editor).id}/images"
    bystander = UserFactory(role_name="editor")
    locked = before_the_lock(app, monkeypatch, uploads, bystander.id, signed_out_everywhere)

    assert post_file(client, path, corpus.png(), token_page=path).status_code == 302
    image = db.session.scalar(select(Upload))
    assert image is not None
    assert post(client, f"/uploads/{image.id}/delete").status_code == 302

    assert locked == [editor_id, editor_id]
    assert upload_count() == 0
    assert _denied() == []
    assert_store_consistent()
