"""Images stored into, or deleted from, other people's articles by an admin demoted
meanwhile, on SQLite and PostgreSQL.

Storing an image into an article takes the editor role (another's article, the admin role),
and so does deleting someone else's image. Both were judged on the account the request
loaded at its start; they are judged again under the actor's row lock, which a role change
also takes.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
from flask import Flask
from sqlalchemy import func, select
from werkzeug.exceptions import Forbidden

from bastion.content import services as content
from bastion.extensions import db
from bastion.models import AuditEvent, Upload, User
from bastion.uploads import services as uploads
from tests.factories import ArticleFactory, UserFactory
from tests.support.meanwhile import before_the_lock, demotable_admin, demoted
from tests.uploads import corpus
from tests.uploads.conftest import assert_store_consistent

ASVS = ("V8.2.1", "V8.2.2", "V8.3.1")


def _store(actor: User, article_id: int) -> Callable[[], Upload]:
    def store() -> Upload:
        article = content.get_article(actor, article_id)
        assert article is not None
        return uploads.store_image(actor, io.BytesIO(corpus.png()), kind="article",
                                   article=article, original_name="late.png")

    return store


def _uploads() -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count(Upload.id))) or 0


def _denied() -> list[object]:
    db.session.expire_all()
    rows = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "authz.denied"))
    return [row.details for row in rows]


@pytest.mark.asvs(*ASVS)
def test_a_demoted_admin_deletes_no_one_elses_image(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    author = UserFactory(role_name="editor")
    article = ArticleFactory(author=author)
    image = _store(author, article.id)()
    image_id = image.id
    boss = demotable_admin()
    locked = before_the_lock(app, monkeypatch, uploads, boss.id, demoted())

    with pytest.raises(Forbidden, match="no longer do this"):
        uploads.delete_upload(boss, image)

    # Both accounts' locks, the lower id first (the owner's here).
    assert locked == sorted([author.id, boss.id])
    assert _uploads() == 1
    assert _denied() == [{"hidden": False, "what": f"delete upload {image_id}"}]


@pytest.mark.asvs(*ASVS)
def test_an_admin_still_an_admin_deletes_someone_elses_image(app: Flask) -> None:
    author = UserFactory(role_name="editor")
    image = _store(author, ArticleFactory(author=author).id)()
    uploads.delete_upload(UserFactory(role_name="admin"), image)
    assert _uploads() == 0


@pytest.mark.asvs(*ASVS)
@pytest.mark.parametrize("whose", ["someone else's", "own"])
def test_an_image_stored_while_its_uploader_is_demoted_is_refused(
    app: Flask, monkeypatch: pytest.MonkeyPatch, whose: str
) -> None:
    """An admin into another's article (demoted to editor), or an editor into their own
    (demoted to viewer): neither role allows the edit any more."""
    if whose == "own":
        actor = UserFactory(role_name="editor")
        article = ArticleFactory(author=actor)
        role = "viewer"
    else:
        actor = demotable_admin()
        article = ArticleFactory()
        role = "editor"
    store, article_id = _store(actor, article.id), article.id
    before_the_lock(app, monkeypatch, uploads, actor.id, demoted(role))

    with pytest.raises(Forbidden, match="no longer do this"):
        store()

    assert _uploads() == 0
    assert _denied() == [{"hidden": False, "what": f"upload to article {article_id}"}]
    assert_store_consistent()  # refused before any file was written
