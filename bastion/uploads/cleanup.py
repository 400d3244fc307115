"""Files follow their rows: deleting an upload, article or user removes its files on commit.

The database removes ``uploads`` rows with their article or owner (ON DELETE CASCADE), but
files are not in the database. A ``before_flush`` hook notes the files of everything being
deleted (and deletes those rows itself, before their parents, so the files noted are
exactly the rows that go); the files are unlinked only ``after_commit``, so a rolled-back
delete keeps its files. A DELETE statement on users run through the session
(``delete(User)``) is handled the same way, just before it runs.

A user who goes takes their own images along (their photo, the images of their articles,
images attached to no article), but not the images they put into someone else's article
(an admin may edit any article): those are part of that author's content, so they are
handed over to the article's author, in the same transaction, and audited as
``upload.handed_over``.
``check_store`` finds what a crash could still leave behind, for ``flask uploads check``.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import ColumnElement, delete, event, or_, select, true, update
from sqlalchemy.orm import ORMExecuteState, Session

from bastion.extensions import db
from bastion.models import Article, Upload, User
from bastion.models.locks import lock_articles_of
from bastion.security import audit
from bastion.uploads import storage
from bastion.uploads.services import file_names

log = logging.getLogger("bastion.uploads")
PENDING = "bastion.uploads.doomed_files"


def _doomed(session: Session) -> set[Path]:
    return session.info.setdefault(PENDING, set())  # type: ignore[no-any-return]


@event.listens_for(Session, "before_flush")
def _collect_files_of_deleted(session: Session, _ctx: object, _instances: object) -> None:
    doomed = _doomed(session)
    article_ids = [o.id for o in session.deleted if isinstance(o, Article)]
    user_ids = [o.id for o in session.deleted if isinstance(o, User)]
    for obj in session.deleted:
        if isinstance(obj, Upload):
            doomed.update(storage.path_for(n) for n in file_names(obj))
    if not (article_ids or user_ids):
        return
    with session.no_autoflush:
        if user_ids:
            _lock_users(session, User.id.in_(user_ids))
            lock_articles_of(user_ids, session)  # before their images (see the lock)
            _hand_over(session, user_ids, article_ids)
        _remove_uploads(session, user_ids, article_ids)


@event.listens_for(Session, "do_orm_execute")
def _before_deleting_users(state: ORMExecuteState) -> None:
    """``delete(User)`` never flushes, so the hook above misses it: the same rule, first."""
    if not state.is_delete:
        return
    # The mapper for ``delete(User)``; the table for ``delete(User.__table__)``.
    mapper, table = state.bind_mapper, getattr(state.statement, "table", None)
    if not (
        (mapper is not None and mapper.class_ is User)
        or getattr(table, "name", None) == User.__tablename__
    ):
        return
    session = state.session
    condition = getattr(state.statement, "whereclause", None)
    condition = true() if condition is None else condition
    with session.no_autoflush:
        _lock_users(session, condition)
        user_ids = list(session.scalars(select(User.id).where(condition)))
        if user_ids:
            lock_articles_of(user_ids, session)  # before their images (see the lock)
            _hand_over(session, user_ids, [])
            _remove_uploads(session, user_ids, [])


def _lock_users(session: Session, condition: ColumnElement[bool]) -> None:
    """Take the users' locks (``bastion.models.locks.lock_user``) before anything is read.

    Their uploads and deletes wait until the deletion commits, so an image uploaded into
    another author's article in the meantime is either seen and handed over, or refused
    once the user is gone, never deleted with them. The new owners are not locked: their
    quota is not checked for what they receive, and a fixed order for two deletions that
    hand over to each other could not be kept.
    """
    session.execute(
        update(User)
        .where(condition)
        .values(updated_at=User.updated_at)
        .execution_options(synchronize_session=False, user_state_neutral=True)
    )


def _hand_over(session: Session, user_ids: Sequence[int], article_ids: Sequence[int]) -> None:
    """Give the leaving users' images in other people's articles to those articles' authors.

    Articles whose author leaves too, or that are deleted in the same flush, keep nothing:
    their images go with them. One audit event per new owner and former owner, the new
    owner (whose content it is) as the target user.
    """
    rows = session.execute(
        select(Upload.id, Upload.owner_id, Article.author_id)
        .join(Article, Article.id == Upload.article_id)
        .where(
            Upload.owner_id.in_(user_ids),
            Article.author_id.not_in(user_ids),
            Article.id.not_in(article_ids),
        )
        .order_by(Upload.created_at, Upload.id)
    ).all()
    moves: dict[tuple[int, int], list[str]] = defaultdict(list)
    for upload_id, former, author in rows:
        moves[(former, author)].append(upload_id)
    for (former, author), ids in moves.items():
        session.execute(
            update(Upload)
            .where(Upload.id.in_(ids), Upload.owner_id == former)
            .values(owner_id=author)
            .execution_options(synchronize_session="fetch")
        )
        audit.record(
            "upload.handed_over",
            target_user_id=author,
            details={"from_user_id": former, "count": len(ids), "upload_ids": ids},
            commit=False,
        )


def _remove_uploads(session: Session, user_ids: Sequence[int], article_ids: Sequence[int]) -> None:
    """Note the files of the uploads that go with these users and articles, and delete the
    rows now, before their parents, whether or not the database cascades."""
    owned_articles = select(Article.id).where(Article.author_id.in_(user_ids))
    condition = or_(
        Upload.article_id.in_(article_ids),
        Upload.owner_id.in_(user_ids),
        Upload.article_id.in_(owned_articles),
    )
    doomed = _doomed(session)
    for upload in session.scalars(select(Upload).where(condition)):
        doomed.update(storage.path_for(n) for n in file_names(upload))
    session.execute(delete(Upload).where(condition).execution_options(synchronize_session=False))


@event.listens_for(Session, "after_commit")
def _remove_files(session: Session) -> None:
    doomed = session.info.pop(PENDING, None)
    for path in doomed or ():
        try:
            path.unlink(missing_ok=True)
        except OSError:
            log.exception("could not remove upload file", extra={"file": path.name})


@event.listens_for(Session, "after_rollback")
def _keep_files(session: Session) -> None:
    session.info.pop(PENDING, None)


@dataclass(frozen=True)
class StoreReport:
    orphan_files: list[Path]  # on disk with no row (or temporary leftovers)
    missing_files: list[str]  # rows whose file is gone
    # Anything else under the upload directory (symlinks, other programs' files): reported,
    # never pruned, since the store did not write it.
    foreign: list[Path] = field(default_factory=list)

    @property
    def consistent(self) -> bool:
        return not self.orphan_files and not self.missing_files


def _is_real(path: Path, kind: int) -> bool:
    """``path`` is itself of this kind (S_IFDIR, S_IFREG), not a symlink to one."""
    try:
        return stat.S_IFMT(os.lstat(path).st_mode) == kind
    except OSError:
        return False


def _scan_store(root: Path) -> tuple[list[Path], list[Path]]:
    """(files the store could have written, everything else) under ``root``.

    Only real fan-out directories (``ab/``) and regular files with a storage name filed under
    them, or a temporary name, count; a symlink is never followed. ``--prune`` deletes only
    orphans from the first list, so a symlinked directory or a shared volume cannot lead it
    to files the store did not write.
    """
    stored: list[Path] = []
    foreign: list[Path] = []
    for directory in root.iterdir():
        fan_out = re.fullmatch(r"[0-9a-f]{2}", directory.name) is not None
        if not (fan_out and _is_real(directory, stat.S_IFDIR)):
            foreign.append(directory)
            continue
        for path in directory.iterdir():
            named = path.name.startswith(storage.TEMP_PREFIX) or (
                storage.NAME_RE.match(path.name) is not None and path.name[:2] == directory.name
            )
            (stored if named and _is_real(path, stat.S_IFREG) else foreign).append(path)
    return stored, foreign


def still_orphan(path: Path) -> bool:
    """Whether no row names this file, asked again right before it is pruned.

    ``check_store`` lists the rows before it scans the disk: on a large store an upload can
    be written and committed in between, and (with a small ``--min-age`` or a slow scan)
    would otherwise be pruned from under its row.
    """
    if path.name.startswith(storage.TEMP_PREFIX):
        return True
    main_name = re.sub(r"_[0-9]{1,4}(?=\.)", "", path.name)  # a variant belongs to its main file
    db.session.rollback()  # a fresh snapshot, not the one the listing was read in
    stmt = select(Upload.id).where(Upload.storage_name == main_name)
    return db.session.scalar(stmt) is None


def check_store() -> StoreReport:
    """Compare rows and files; the store is consistent when both lists are empty."""
    expected: set[str] = set()
    missing: list[str] = []
    for upload in db.session.scalars(select(Upload)):
        for name in file_names(upload):
            expected.add(name)
            if not storage.exists(name):
                missing.append(name)
    stored, foreign = _scan_store(storage.root())
    orphans = [p for p in stored if p.name not in expected]
    return StoreReport(
        orphan_files=sorted(orphans), missing_files=sorted(missing), foreign=sorted(foreign)
    )
