"""Writes to content racing account changes, truly at once, on PostgreSQL.

The lock order: a change to content takes the actor's row lock, then the article's (or
comment's), then deletes its images and comments; an account change takes the admins'
lock, then the user's, and a deletion then the user's articles (``lock_articles_of``)
before their images, comments and the rest. These run each pair from two (or three)
threads released together, over rounds that start one side up to 6 ms later, and check
that PostgreSQL aborts none as a deadlock, that no request waits for ever, and that every
outcome is whole: the write happened and is seen (counted by the deletion that took it
along), or it was refused and changed nothing. The last test forces the worst moment.
"""

from __future__ import annotations

import contextlib
import io
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select, text
from werkzeug.exceptions import HTTPException

from bastion.admin import deletion
from bastion.admin import services as admin
from bastion.content import services as content
from bastion.extensions import db
from bastion.models import Article, Comment, Upload, User
from bastion.uploads import cleanup
from bastion.uploads import services as uploads
from tests.factories import ArticleFactory, CommentFactory, UserFactory
from tests.support.races import MEET_SECONDS
from tests.uploads import corpus

ASVS = ("V2.3.3", "V16.5.3")
ROUNDS = 20
# The later side starts this much later, in turn, round by round: 0 to 6 ms.
SHIFT_SECONDS = 0.001
WAIT_SECONDS = 15.0  # a round's threads all done by then, or one hangs

# A write as prepared in its thread (its objects loaded in its own session): called
# when every thread is ready.
Write = Callable[[], object]
Prepare = Callable[[], Write]


@pytest.fixture
def pg_app(make_app: Callable[..., Flask]) -> Iterator[Flask]:
    """PostgreSQL only: its row locks wait and can deadlock; SQLite has one write lock."""
    app = make_app(backend="postgresql")
    with app.app_context():
        yield app


def _at_once(app: Flask, prepares: list[Prepare], round_no: int) -> list[object]:
    """Prepare each write in its own thread and session, release them together (one of
    them shifted by a few ms, as ``round_no`` says) and give what each returned or raised."""
    ready = threading.Barrier(len(prepares))
    results: list[object] = [None] * len(prepares)
    backends: list[int] = []
    late, shift = round_no % len(prepares), (round_no // len(prepares)) % 7 * SHIFT_SECONDS

    def run(i: int) -> None:
        with app.app_context():
            try:
                write = prepares[i]()
                backends.append(db.session.scalar(text("SELECT pg_backend_pid()")))
                ready.wait(10)
                if i == late:
                    time.sleep(shift)
                results[i] = write()
            except Exception as exc:  # judged by the test, not lost in the thread
                results[i] = exc
            finally:
                db.session.rollback()
                db.session.remove()

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(prepares))]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + WAIT_SECONDS
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() for t in threads):
        _end(backends)
        pytest.fail(f"round {round_no}: a write hung ({results!r})")
    db.session.expire_all()
    return results


def _end(backends: list[int]) -> None:
    """End the hung writes' connections, or their locks would hold the schema's removal."""
    for pid in backends:
        db.session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    db.session.commit()


def _refused(result: object, *allowed: type[BaseException] | int) -> bool:
    """Whether ``result`` is one of the refusals ``allowed`` (classes, or HTTP codes)."""
    if isinstance(result, HTTPException):
        return result.code in allowed
    return isinstance(result, BaseException) and isinstance(
        result, tuple(a for a in allowed if isinstance(a, type))
    )


def _fail(round_no: int, results: list[object]) -> str:
    return f"round {round_no}: unexpected outcome {results!r}"


def _get(model: type[Any], pk: object) -> Any:
    row = db.session.get(model, pk)
    assert row is not None
    return row


def _count(model: type[Any], *where: Any) -> int:
    return db.session.scalar(select(func.count()).select_from(model).where(*where)) or 0


def _image(actor: User, article: Article) -> Upload:
    return uploads.store_image(actor, io.BytesIO(corpus.png()), kind="article",
                               article=article, original_name="in.png")


# ---------------------------------------------------------- deleting one's account ---
def _delete_own(user_id: int) -> Prepare:
    def prepare() -> Write:
        user = _get(User, user_id)
        return lambda: deletion.delete_own_account(user, confirmation=user.username)

    return prepare


def _delete_by_admin(admin_id: int, user_id: int) -> Prepare:
    def prepare() -> Write:
        boss, user = _get(User, admin_id), _get(User, user_id)
        return lambda: deletion.delete_user(boss, user, confirmation=user.username)

    return prepare


def _comment(actor_id: int, article_id: int) -> Prepare:
    def prepare() -> Write:
        actor = _get(User, actor_id)
        article = _get(Article, article_id)
        return lambda: content.add_comment(actor, article, "Late words")

    return prepare


@pytest.mark.asvs(*ASVS)
@pytest.mark.parametrize("by", ["themselves", "an admin"])
@pytest.mark.parametrize("commenter", ["the author", "a reader"])
def test_a_comment_on_an_article_whose_author_is_deleted_meanwhile(
    pg_app: Flask, by: str, commenter: str
) -> None:
    """The comment lands first and is counted and deleted with the article, or finds the
    author (ActorGoneError) or the article (404) gone."""
    boss = UserFactory(role_name="admin")
    for round_no in range(ROUNDS):
        author = UserFactory(role_name="editor")
        article = ArticleFactory(author=author)
        CommentFactory(article=article, author=author)
        writer = author if commenter == "the author" else UserFactory()
        _image(author, article)
        ids = author.id, article.id, writer.id
        gone = _delete_own(ids[0]) if by == "themselves" else _delete_by_admin(boss.id, ids[0])

        results = _at_once(pg_app, [_comment(ids[2], ids[1]), gone], round_no)

        said, done = results
        assert isinstance(done, deletion.Deletion), _fail(round_no, results)
        landed = isinstance(said, Comment)
        assert landed or _refused(said, content.ActorGoneError, 404), _fail(round_no, results)
        mine, others = (1 + landed, 0) if commenter == "the author" else (1, int(landed))
        assert (done.summary.comments, done.summary.comments_by_others) == (mine, others)
        assert db.session.get(User, ids[0]) is None
        assert _count(Article, Article.id == ids[1]) == 0
        assert _count(Comment, Comment.article_id == ids[1]) == 0
        assert _count(Upload, Upload.article_id == ids[1]) == 0
    assert cleanup.check_store().consistent


# -------------------------------------------------- an admin deleting an author's article ---
def _admin_deletes_article(admin_id: int, article_id: int) -> Prepare:
    def prepare() -> Write:
        boss, article = _get(User, admin_id), _get(Article, article_id)
        return lambda: content.delete_article(boss, article)

    return prepare


def _author_edits(author_id: int, article_id: int) -> Prepare:
    def prepare() -> Write:
        author, article = _get(User, author_id), _get(Article, article_id)
        return lambda: content.update_article(author, article, title="Rewritten")

    return prepare


def _author_uploads(author_id: int, article_id: int) -> Prepare:
    def prepare() -> Write:
        author, article = _get(User, author_id), _get(Article, article_id)
        return lambda: _image(author, article)

    return prepare


@pytest.mark.asvs(*ASVS)
@pytest.mark.parametrize("meanwhile", ["edits it", "deletes the account"])
def test_an_admin_deletes_an_article_while_its_author(pg_app: Flask, meanwhile: str) -> None:
    """The article (with its image and comments) goes, once: the edit saved first or told
    the article is gone; the account's deletion counts it only when the admin's came
    after. Before the deletion took the articles' locks first, the two could deadlock."""
    boss = UserFactory(role_name="admin")
    for round_no in range(ROUNDS):
        author = UserFactory(role_name="editor")
        article = ArticleFactory(author=author)
        CommentFactory(article=article, author=author)
        CommentFactory(article=article)
        _image(author, article)
        ids = author.id, article.id
        theirs = _author_edits(*ids) if meanwhile == "edits it" else _delete_own(ids[0])

        results = _at_once(pg_app, [_admin_deletes_article(boss.id, ids[1]), theirs], round_no)

        removed, done = results
        if meanwhile == "edits it":
            assert removed is None, _fail(round_no, results)
            assert isinstance(done, Article) or _refused(
                done, content.ContentNotFoundError), _fail(round_no, results)
        else:
            assert isinstance(done, deletion.Deletion), _fail(round_no, results)
            assert removed is None or _refused(removed, content.ContentNotFoundError), _fail(
                round_no, results)
            assert done.summary.articles == (0 if removed is None else 1)
        assert _count(Article, Article.id == ids[1]) == 0
        assert _count(Comment, Comment.article_id == ids[1]) == 0
        assert _count(Upload, Upload.article_id == ids[1]) == 0
    assert cleanup.check_store().consistent


# ------------------------------------------------------------------ images stored ---
def _disable(admin_id: int, user_id: int) -> Prepare:
    def prepare() -> Write:
        boss, user = _get(User, admin_id), _get(User, user_id)
        return lambda: admin.set_disabled(boss, user, True)

    return prepare


@pytest.mark.asvs(*ASVS)
@pytest.mark.parametrize("meanwhile", [
    "an admin deletes the article", "the author is disabled", "the author is deleted",
])
def test_an_image_stored_into_an_article_while(pg_app: Flask, meanwhile: str) -> None:
    """The author stores an image into their article (or, while the author's account is
    deleted, an admin does): stored before, and then deleted with the article, files
    included; or refused, storing nothing. Never a row gone with its files left behind."""
    boss = UserFactory(role_name="admin")
    for round_no in range(ROUNDS):
        author = UserFactory(role_name="editor")
        article = ArticleFactory(author=author)
        ids = author.id, article.id
        uploader = boss.id if meanwhile == "the author is deleted" else ids[0]
        other = {
            "an admin deletes the article": _admin_deletes_article(boss.id, ids[1]),
            "the author is disabled": _disable(boss.id, ids[0]),
            "the author is deleted": _delete_by_admin(boss.id, ids[0]),
        }[meanwhile]

        results = _at_once(pg_app, [_author_uploads(uploader, ids[1]), other], round_no)

        stored, done = results
        assert not isinstance(done, Exception), _fail(round_no, results)
        kept = _count(Upload, Upload.article_id == ids[1])
        if meanwhile == "the author is disabled":
            assert isinstance(stored, Upload) or _refused(stored, 403), _fail(round_no, results)
            assert kept == (1 if isinstance(stored, Upload) else 0)
        else:
            assert isinstance(stored, Upload) or _refused(
                stored, uploads.UploadError, 404), _fail(round_no, results)
            assert kept == 0
        if meanwhile == "the author is deleted":
            assert isinstance(done, deletion.Deletion)
            assert done.summary.images == int(isinstance(stored, Upload))
        assert cleanup.check_store().consistent, f"round {round_no}: {results!r}"


# ------------------------------------------------------------------ admins at odds ---
def _admin_edits(admin_id: int, article_id: int) -> Prepare:
    def prepare() -> Write:
        boss, article = _get(User, admin_id), _get(Article, article_id)
        return lambda: content.update_article(boss, article, title="Moderated")

    return prepare


def _admin_deletes_comment(admin_id: int, comment_id: int) -> Prepare:
    def prepare() -> Write:
        boss, comment = _get(User, admin_id), _get(Comment, comment_id)
        return lambda: content.delete_comment(boss, comment)

    return prepare


def _role(admin_id: int, user_id: int, role: str) -> Prepare:
    def prepare() -> Write:
        boss, user = _get(User, admin_id), _get(User, user_id)
        return lambda: admin.set_role(boss, user, role)

    return prepare


@pytest.mark.asvs(*ASVS, "V8.2.1")
def test_two_admins_moderate_each_other_while_one_demotes_the_other(pg_app: Flask) -> None:
    """Ada deletes Bob's comment and demotes him; Bob meanwhile rewrites Ada's article:
    before his demotion commits, or refused after it, never after it and written."""
    for round_no in range(ROUNDS):
        ada, bob = UserFactory(role_name="admin"), UserFactory(role_name="admin")
        ada_article = ArticleFactory(author=ada, title="Ada's")
        bob_comment = CommentFactory(article=ada_article, author=bob)
        ids = ada.id, bob.id, ada_article.id, bob_comment.id

        results = _at_once(pg_app, [
            _admin_deletes_comment(ids[0], ids[3]),
            _admin_edits(ids[1], ids[2]),
            _role(ids[0], ids[1], "editor"),
        ], round_no)

        deleted, edited, demoted = results
        assert deleted is None and isinstance(demoted, User), _fail(round_no, results)
        title = _get(Article, ids[2]).title
        if isinstance(edited, Article):
            assert title == "Moderated"
        else:
            assert _refused(edited, 403), _fail(round_no, results)
            assert title == "Ada's"
        assert _count(Comment, Comment.id == ids[3]) == 0
        assert _get(User, ids[1]).role_name == "editor"


# ----------------------------------------------------- one's account and one's role ---
@pytest.mark.asvs(*ASVS)
@pytest.mark.parametrize("role", ["admin", "viewer"])
def test_an_account_deleted_by_its_holder_while_an_admin_changes_its_role(
    pg_app: Flask, role: str
) -> None:
    """Both take the admins' lock, then the user's: the role changes first, or is told the
    account is gone; the deletion always goes through."""
    boss = UserFactory(role_name="admin")
    for round_no in range(ROUNDS):
        user = UserFactory(role_name="editor")
        ArticleFactory(author=user)
        user_id = user.id

        results = _at_once(pg_app, [_delete_own(user_id), _role(boss.id, user_id, role)],
                           round_no)

        done, changed = results
        assert isinstance(done, deletion.Deletion), _fail(round_no, results)
        assert isinstance(changed, User) or _refused(changed, admin.UserGoneError), _fail(
            round_no, results)
        assert db.session.get(User, user_id) is None


# ------------------------------------------------------------- forced interleavings ---
def _meet_after(monkeypatch: pytest.MonkeyPatch, *points: tuple[object, str]) -> None:
    """Make two threads meet once, each after the first of ``points`` it returns from: one
    holds what it locked there while the other does the same. A meeting the wait runs out
    on is expected (the other may wait for a lock the first holds)."""
    met = threading.Barrier(2)
    once = threading.local()
    for owner, name in points:
        real = getattr(owner, name)

        def wrapper(*args: Any, _real: Callable[..., Any] = real, **kwargs: Any) -> Any:
            result = _real(*args, **kwargs)
            if not getattr(once, "met", False):
                once.met = True
                with contextlib.suppress(threading.BrokenBarrierError):
                    met.wait(MEET_SECONDS)
            return result

        monkeypatch.setattr(owner, name, wrapper)


# The two sides of each forced meeting: the first holds the article's lock (or, storing an
# image, its FOR KEY SHARE), the second (a deletion) has just deleted the images it found.
Side = Callable[[int, int, int], Prepare]  # of the admin's, the author's, the article's ids
FORCED: dict[str, tuple[Side, Side, tuple[object, str]]] = {
    "an admin deletes the article, its author the account": (
        lambda boss, _author, art: _admin_deletes_article(boss, art),
        lambda _boss, author, _art: _delete_own(author),
        (content, "_lock_for_deletion"),
    ),
    "an admin stores an image into it, the author's account deleted": (
        lambda boss, _author, art: _author_uploads(boss, art),
        lambda boss, author, _art: _delete_by_admin(boss, author),
        (uploads, "_article_still_there"),
    ),
    "its author stores an image into it, an admin deletes it": (
        lambda _boss, author, art: _author_uploads(author, art),
        lambda boss, _author, art: _admin_deletes_article(boss, art),
        (uploads, "_article_still_there"),
    ),
}


@pytest.mark.asvs(*ASVS)
@pytest.mark.parametrize("case", sorted(FORCED))
def test_a_deletion_met_midway_neither_deadlocks_nor_leaves_files(
    pg_app: Flask, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    """The worst moment, every time: one side holds the article when the other has just
    deleted the images it found. A deletion took the article only in the database's
    cascade, after the images: PostgreSQL aborted one side (deadlock detected), or an
    image committed meanwhile went with the article but its files stayed on disk."""
    first, second, holding = FORCED[case]
    boss = UserFactory(role_name="admin")
    author = UserFactory(role_name="editor")
    article = ArticleFactory(author=author)
    CommentFactory(article=article, author=author)
    _image(author, article)
    ids = boss.id, author.id, article.id
    _meet_after(monkeypatch, holding, (cleanup, "_remove_uploads"))

    results = _at_once(pg_app, [first(*ids), second(*ids)], 0)

    # The image is stored and goes with the article, or is refused for the article is gone.
    for result in results:
        assert not isinstance(result, Exception) or _refused(
            result, uploads.UploadError, content.ContentNotFoundError), results
    assert _count(Article, Article.id == ids[2]) == 0
    assert _count(Upload) == 0
    assert cleanup.check_store().consistent
