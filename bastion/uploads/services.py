"""The upload service, shared by pages and the API: check, re-encode, store, account for.

``store_image`` is the only way an image enters the site. It owns the transaction: files
are written atomically first, then the row is committed; if the commit fails the files are
removed again, so the store never holds a row without its file. Every refusal is audited
(``upload.rejected`` with the reason) and counted.
"""

from __future__ import annotations

import logging
import re
import secrets
import unicodedata
from collections.abc import Callable
from typing import IO, Any, Protocol

from flask import current_app
from sqlalchemy import func, select

from bastion import pagecache
from bastion.content.services import judge_again
from bastion.extensions import db
from bastion.models import Article, Upload, User
from bastion.models.locks import lock_user
from bastion.observability import counters
from bastion.profiles.services import is_public
from bastion.security import audit, authz
from bastion.uploads import imaging, storage

log = logging.getLogger("bastion.uploads")
KINDS = ("avatar", "article")
ID_RE = re.compile(r"\A[0-9a-f]{32}\Z")
PATH_SEPARATOR_RE = re.compile(r"[/\\]")
NAME_MAX = 255
# A longer "extension" is part of the name: a name is then cut at its end like any other.
EXTENSION_MAX = 16
# Windows device names: harmless here (never used as paths) but kept out of download names.
RESERVED_NAMES = frozenset(
    {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}
)


class UploadError(ValueError):
    """A refused upload; ``message`` is safe to show, ``reason`` is a stable code."""

    def __init__(self, reason: str, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.status = status


class FileLike(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def _clean_name(raw: str | None) -> str:
    """The client's file name with no path and no control characters, at full length."""
    name = unicodedata.normalize("NFC", str(raw or ""))
    name = PATH_SEPARATOR_RE.split(name)[-1]  # the last path segment only (POSIX or Windows)
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    return name.strip(" .")


def _shorten(name: str) -> str:
    """At most ``NAME_MAX`` characters, cut in the stem so a reader still sees the type."""
    if len(name) <= NAME_MAX:
        return name
    stem, dot, ext = name.rpartition(".")
    if dot and len(ext) <= EXTENSION_MAX:
        return f"{stem[: NAME_MAX - len(ext) - 1]}.{ext}"
    return name[:NAME_MAX]


def clean_original_name(raw: str | None) -> str:
    """The client's file name as display-only metadata: no path, no control characters."""
    return _shorten(_clean_name(raw))


def _extension(name: str) -> str:
    return name.rsplit(".", 1)[1] if "." in name else ""


def download_name(upload: Upload) -> str:
    """A safe name for Content-Disposition: the original stem (if sensible) + the real type.

    A profile photo is public to anyone and its owner never sees the name it is served
    under, so it gets none of theirs: a phone's ``PXL_20240315_142233`` or a
    ``jane-doe-passport`` would publish what re-encoding removed from the pixels' metadata.
    """
    if upload.kind == "avatar":
        return f"photo.{storage_extension(upload)}"
    stem = upload.original_name.rsplit(".", 1)[0]
    # NFKC first: Werkzeug's ASCII ``filename=`` fallback is the NFKD form, in which a
    # fullwidth or small solidus or full stop (U+FF0F, U+FE68, U+2024...) is ``/``, ``\`` or ``.``.
    stem = unicodedata.normalize("NFKC", stem)
    stem = re.sub(r"[\"';<>%/\\]", "", stem).strip(" .")[:80]
    if not stem or stem.lower().split(".")[0] in RESERVED_NAMES:
        stem = "image"
    return f"{stem}.{storage_extension(upload)}"


def storage_extension(upload: Upload) -> str:
    return upload.storage_name.rsplit(".", 1)[1]


def file_names(upload: Upload) -> list[str]:
    """Every file that belongs to an upload: the main file and any fixed-size variants."""
    names = [upload.storage_name]
    if upload.kind == "avatar":
        names += [storage.variant_name(upload.storage_name, s) for s in imaging.AVATAR_SIZES[1:]]
    return names


def usage(user_id: int) -> tuple[int, int]:
    """(files, bytes) a user has stored, for the quota."""
    count, total = db.session.execute(
        select(func.count(Upload.id), func.coalesce(func.sum(Upload.size), 0)).where(
            Upload.owner_id == user_id
        )
    ).one()
    return int(count), int(total)


def _reject(actor: User, reason: str, context: dict[str, Any]) -> None:
    db.session.rollback()
    audit.record(
        "upload.rejected", actor_id=actor.id, details={"reason": reason, **context}, commit=True
    )
    counters.increment("upload_rejections", reason=reason)


def _read_bounded(source: IO[bytes] | FileLike | Any) -> bytes:
    """Read at most the size limit plus one byte: a larger file is refused, not buffered."""
    limit = int(current_app.config["MAX_UPLOAD_BYTES"])
    stream = getattr(source, "stream", source)
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise UploadError(
            "too_large",
            f"The file is larger than {current_app.config['MAX_UPLOAD_MB']} MB.",
            413,
        )
    if not data:
        raise UploadError("empty", "The file is empty.", 400)
    return bytes(data)


def store_image(
    actor: User,
    source: IO[bytes] | FileLike | Any,
    *,
    kind: str,
    article: Article | None = None,
    original_name: str | None = None,
    still_signed_in: Callable[[], bool] | None = None,
) -> Upload:
    """Check, re-encode and store an image for ``actor``; raise UploadError when refused.

    ``still_signed_in`` reads the caller's sign-in again under the actor's lock (as for
    ``bastion.content.services.judge_again``): a sign-in ended meanwhile stores nothing.
    """
    if kind not in KINDS or (kind == "article") != (article is not None):
        raise ValueError("kind must be 'avatar', or 'article' with an article")
    if article is not None:
        authz.require(
            authz.can_edit_article(actor, article), hide=not authz.can_read_article(actor, article)
        )
    raw = original_name if original_name is not None else getattr(source, "filename", "")
    full_name = _clean_name(raw)
    name = _shorten(full_name)
    context: dict[str, Any] = {"kind": kind, "name": name[:100]}
    if article is not None:
        context["article_id"] = article.id
    try:
        # The whole name: cut short, a long one could lose its ".php" or end in ".png".
        if not imaging.name_extension_allowed(_extension(full_name)):
            raise UploadError(
                "extension",
                "Only JPEG, PNG, GIF and WebP images are accepted (a name ending in .jpg, .jpeg, "
                ".png, .gif or .webp, or with no extension).",
                415,
            )
        _check_room(actor, kind=kind)
        image = imaging.process(_read_bounded(source), kind=kind)
        return _save(actor, image, kind=kind, article=article, name=name,
                     still_signed_in=still_signed_in)
    except imaging.ImageRejectedError as exc:
        _reject(actor, exc.reason, context)
        raise UploadError(exc.reason, exc.message, exc.status) from exc
    except UploadError as exc:
        _reject(actor, exc.reason, context)
        raise


def _article_still_there(article_id: int) -> bool:
    """Whether the article survived until now, and will until commit: it may have been
    deleted since the access check. ``FOR KEY SHARE`` holds off a delete on PostgreSQL
    (edits still run); on SQLite the user lock already holds the database's write lock."""
    stmt = select(Article.id).where(Article.id == article_id)
    return db.session.scalar(stmt.with_for_update(read=True, key_share=True)) is not None


def _user_still_there(user_id: int) -> bool:
    """Whether the uploader's account survived until now (read under their lock, which a
    deletion holds until it commits): a row owned by a deleted account would be refused by
    PostgreSQL at commit (a 500) and kept by SQLite, owned by no one, maybe by the next
    account given the same id."""
    return db.session.scalar(select(User.id).where(User.id == user_id)) is not None


def _check_quota(actor: User, incoming: int, *, replacing: Upload | None) -> None:
    count, total = usage(actor.id)
    if replacing is not None:
        count, total = count - 1, total - replacing.size
    cfg = current_app.config
    if count + 1 > cfg["UPLOAD_QUOTA_FILES"] or total + incoming > cfg["UPLOAD_QUOTA_BYTES"]:
        raise UploadError(
            "quota",
            f"Your upload quota is used up ({cfg['UPLOAD_QUOTA_FILES']} files or "
            f"{cfg['UPLOAD_QUOTA_MB']} MB). Delete some images first.",
            422,
        )


def _check_room(actor: User, *, kind: str) -> None:
    """Refuse before decoding when the quota has no room for any image at all.

    Decoding holds the process's one decode slot for up to seconds: a user at their quota
    kept it from others for an image refused afterwards anyway, and while it was busy was
    told to try again in a minute, not that the quota was used up. An estimate without the
    lock: ``_save`` checks again, exactly, under it.
    """
    replacing = None
    if kind == "avatar" and actor.avatar_id:
        replacing = db.session.get(Upload, actor.avatar_id)
    _check_quota(actor, 1, replacing=replacing)  # any stored image takes at least a byte


def _save(
    actor: User, image: imaging.CleanImage, *, kind: str, article: Article | None, name: str,
    still_signed_in: Callable[[], bool] | None,
) -> Upload:
    size = len(image.data) + sum(len(v) for v in image.variants.values())
    # One user's uploads and deletes, one at a time: two at once cannot both pass the quota
    # check, and a photo is not removed from under its replacement.
    lock_user(actor.id)
    if not _user_still_there(actor.id):
        raise UploadError("gone", "Your account was deleted.", 404)
    if article is not None and not _article_still_there(article.id):
        raise UploadError("gone", "The article was deleted.", 404)
    # Judged again under the lock that role changes, disabling and "sign out everywhere"
    # take, so one committed meanwhile is seen: editing an article takes the editor (or,
    # another's, the admin) role; a profile photo, an account still enabled.
    if article is not None:
        judge_again(actor, lambda: authz.can_edit_article(actor, article),
                    what=f"upload to article {article.id}", still_signed_in=still_signed_in)
    else:
        judge_again(actor, lambda: actor.is_active, what="upload avatar",
                    still_signed_in=still_signed_in)
    old_avatar = None
    if kind == "avatar":
        db.session.refresh(actor, attribute_names=["avatar_id"])  # as of the lock
        old_avatar = db.session.get(Upload, actor.avatar_id) if actor.avatar_id else None
    _check_quota(actor, size, replacing=old_avatar)
    upload = Upload(
        id=new_id(),
        owner_id=actor.id,
        article_id=article.id if article is not None else None,
        kind=kind,
        content_type=image.format.content_type,
        size=size,
        width=image.width,
        height=image.height,
        storage_name=storage.new_name(image.format.extension),
        original_name=name,
    )
    files = {upload.storage_name: image.data}
    for size_px, data in image.variants.items():
        files[storage.variant_name(upload.storage_name, size_px)] = data
    try:
        _write_files(files)
        db.session.add(upload)
        if kind == "avatar":
            actor.avatar_id = upload.id
            if old_avatar is not None:
                db.session.delete(old_avatar)  # its files go after commit (see cleanup)
        audit.record(
            "upload.stored",
            actor_id=actor.id,
            details={"upload_id": upload.id, "kind": kind, "size": size},
            commit=False,
        )
        db.session.commit()
    except BaseException:
        db.session.rollback()
        _discard_files(files)
        raise
    if kind == "avatar":
        pagecache.clear()  # the profile and bylines this worker keeps show the old photo
    return upload


def _write_files(files: dict[str, bytes]) -> None:
    """Write every file, or raise UploadError (503): a full disk or an unwritable store is
    the site's fault, not the file's, and answers with a clear message instead of a 500.
    Nothing is committed yet, so the previous photo stays as it was."""
    try:
        for file_name, data in files.items():
            storage.write_atomic(file_name, data)
    except OSError as exc:
        log.error("could not write upload files", extra={"errno": exc.errno}, exc_info=True)
        raise UploadError(
            "storage",
            "The image could not be saved just now; nothing was changed. Please try again later.",
            503,
        ) from exc


def _discard_files(files: dict[str, bytes]) -> None:
    """Remove the files of a failed store; one that cannot be removed is logged (``flask
    uploads check`` reports it as an orphan) and never hides the error being handled."""
    for file_name in files:
        try:
            storage.delete(file_name)
        except OSError:
            log.exception("could not remove upload file", extra={"file": file_name})


def new_id() -> str:
    """The public id: random and unrelated to the storage name."""
    return secrets.token_hex(16)


def get_upload(upload_id: str) -> Upload | None:
    if not ID_RE.match(upload_id or ""):
        return None
    return db.session.get(Upload, upload_id)


def visible_upload(actor: object, upload_id: str) -> tuple[Upload, bool] | None:
    """The upload and whether it is public, if ``actor`` may see it; else None (404).

    Avatars are public like profiles, so the photo of an account without a public profile
    (disabled, or never confirmed) is hidden with it; an article image follows its article,
    so an image in a draft is visible to the draft's author and admins only.
    """
    upload = get_upload(upload_id)
    if upload is None:
        return None
    if upload.kind == "avatar":
        owner = db.session.get(User, upload.owner_id)
        return (upload, True) if owner is not None and is_public(owner) else None
    article = db.session.get(Article, upload.article_id) if upload.article_id else None
    if article is None or not authz.can_read_article(actor, article):
        return None
    return upload, article.is_published


def can_delete_upload(actor: object, upload: Upload) -> bool:
    if not isinstance(actor, User) or not actor.is_active:
        return False
    if actor.has_role("admin") or upload.owner_id == actor.id:
        return True
    article = db.session.get(Article, upload.article_id) if upload.article_id else None
    return article is not None and authz.can_edit_article(actor, article)


def delete_upload(actor: User, upload: Upload, *,
                  still_signed_in: Callable[[], bool] | None = None) -> None:
    """Remove an upload; its files are deleted once the row's deletion is committed.

    Under the owner's lock (as in ``_save``) and as of it: a photo replaced meanwhile is
    already gone, and the replacement's new ``avatar_id`` is never cleared. The rule is
    judged again under the actor's lock (``judge_again``; ``still_signed_in`` as for
    ``store_image``), the owner's as much as an admin's.
    """
    authz.require(can_delete_upload(actor, upload), hide=visible_upload(actor, upload.id) is None)
    if upload.owner_id == actor.id:
        lock_user(actor.id)
    else:
        # Someone else's image, which the actor's role lets them delete: the actor's lock
        # too, for the rule judged again under it below. Two users' locks, the lower id
        # first: two admins deleting each other's images wait, never deadlock.
        for user_id in sorted((actor.id, upload.owner_id)):
            lock_user(user_id)
    judge_again(actor, lambda: can_delete_upload(actor, upload),
                what=f"delete upload {upload.id}", still_signed_in=still_signed_in)
    if db.session.scalar(select(Upload.id).where(Upload.id == upload.id)) is None:
        db.session.rollback()
        return
    owner = db.session.get(User, upload.owner_id)
    if owner is not None:
        db.session.refresh(owner, attribute_names=["avatar_id"])  # as of the lock
        if owner.avatar_id == upload.id:
            owner.avatar_id = None
    db.session.delete(upload)
    audit.record(
        "upload.deleted",
        actor_id=actor.id,
        target_user_id=upload.owner_id,
        details={"upload_id": upload.id, "kind": upload.kind},
        commit=False,
    )
    db.session.commit()
    pagecache.clear()  # pages this worker keeps would show the deleted image as broken


def article_images(article: Article) -> list[Upload]:
    return list(
        db.session.scalars(
            select(Upload).where(Upload.article_id == article.id).order_by(Upload.created_at)
        )
    )
